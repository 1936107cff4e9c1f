"""`NeuralODE`: a Julia-style (DiffEqFlux) neural ODE layer over `nderegs.solve`."""

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree

from ..core import AbstractIntegral, Heuristics, solve


class NeuralODE(eqx.Module):
    """y' = f(t, y, args) on [t0, t1]; `layer(y0) -> (y(t1), heuristics)`.

    `vector_field(t, y, args)` acts on one sample. With `batched=True` (default) the
    leading axis of `y0` is a batch that is solved as *one* system (the vector field
    is vmapped over it inside the solve), as the papers do: one step size for the
    batch, and the NFE is per batch.

    The tolerances define the error estimate (EEst) as well as the steps; `pcoeff`
    and `icoeff` are the `diffrax.PIDController`'s (default: its I controller). `local`
    ("unbiased" | "biased") samples one step for local regularization and then
    needs `key=` at call time; `stiffness` is passed to [`nderegs.solve`][].
    `throw=False` returns a failed solve (see `Heuristics.successful`) instead of
    raising, which training loops use to stop cleanly.

    `integrals` (e.g. `(nderegs.KineticEnergy(),)`) are integrated along the solve and
    reported in `h.integrals`. `steer=b` is STEER (Ghosh et al. 2020): when a `key` is
    given (training) the end time is drawn t1' ~ U(t1 − b, t1 + b); without a key
    (evaluation) the solve ends at t1.
    """

    vector_field: Callable
    t0: float = eqx.field(static=True, default=0.0)
    t1: float = eqx.field(static=True, default=1.0)
    solver: diffrax.AbstractSolver = diffrax.Tsit5()
    rtol: float = eqx.field(static=True, default=1e-6)
    atol: float = eqx.field(static=True, default=1e-6)
    pcoeff: float = eqx.field(static=True, default=0.0)
    icoeff: float = eqx.field(static=True, default=1.0)
    dt0: float | None = eqx.field(static=True, default=None)
    adjoint: diffrax.AbstractAdjoint = diffrax.RecursiveCheckpointAdjoint()
    max_steps: int = eqx.field(static=True, default=4096)
    local: str | None = eqx.field(static=True, default=None)
    stiffness: bool | None = eqx.field(static=True, default=None)
    batched: bool = eqx.field(static=True, default=True)
    throw: bool = eqx.field(static=True, default=True)
    integrals: tuple[AbstractIntegral, ...] = ()
    steer: float = eqx.field(static=True, default=0.0)

    def __check_init__(self):
        if self.t0 == self.t1:
            raise ValueError(f"NeuralODE needs t0 != t1; got t0 = t1 = {self.t0}.")
        if not 0 <= self.steer < abs(self.t1 - self.t0):
            raise ValueError(
                f"NeuralODE(steer=b) needs 0 <= b < |t1 - t0| = {abs(self.t1 - self.t0)}; "
                f"got b={self.steer}."
            )
        check_controller("NeuralODE", self)

    def _term(self) -> diffrax.ODETerm:
        if not self.batched:
            return diffrax.ODETerm(self.vector_field)
        return diffrax.ODETerm(_BatchedField(self.vector_field))

    def solve(
        self,
        y0: PyTree[Array],
        *,
        args: PyTree = None,
        ts: Array | None = None,
        t1: float | Array | None = None,
        key=None,
    ) -> tuple[diffrax.Solution, Heuristics]:
        """The full `(diffrax.Solution, Heuristics)`: saved at `ts` if given (else at
        the end time), ending at `t1` if given (else the layer's own)."""
        if self.batched:
            sizes = {x.shape[0] if x.ndim else None for x in jax.tree_util.tree_leaves(y0)}
            if None in sizes or len(sizes) != 1:
                raise ValueError(
                    "NeuralODE(batched=True) expects every leaf of y0 to share a "
                    "leading batch axis; got shapes "
                    f"{[x.shape for x in jax.tree_util.tree_leaves(y0)]}. Use "
                    "batched=False for a single unbatched state."
                )
        end = self.t1 if t1 is None else t1
        if key is not None:
            key, steer_key = jax.random.split(key)
            if self.steer > 0 and t1 is None:
                end = self.sample_end_time(steer_key)
        saveat = diffrax.SaveAt(t1=True) if ts is None else diffrax.SaveAt(ts=ts)
        return solve(
            self._term(),
            self.solver,
            self.t0,
            end,
            self.dt0,
            y0,
            args,
            saveat=saveat,
            key=key,
            integrals=self.integrals,
            **solve_settings(self),
        )

    def sample_end_time(self, key):
        """STEER's training end time t1' ~ U(t1 − b, t1 + b)."""
        return self.t1 + jax.random.uniform(key, minval=-self.steer, maxval=self.steer)

    def __call__(
        self, y0: PyTree[Array], *, args: PyTree = None, ts: Array | None = None, key=None
    ) -> tuple[PyTree[Array], Heuristics]:
        """`(y(t1), h)`, or `(y(ts), h)` with a leading time axis when `ts` is given."""
        sol, h = self.solve(y0, args=args, ts=ts, key=key)
        if ts is None:
            return jax.tree_util.tree_map(lambda y: y[0], sol.ys), h
        return sol.ys, h


def check_controller(name: str, layer) -> None:
    problems = []
    if not (layer.rtol > 0 and layer.atol > 0):
        problems.append(f"rtol > 0 and atol > 0 (got rtol={layer.rtol}, atol={layer.atol})")
    if not (layer.pcoeff >= 0 and layer.icoeff > 0):
        problems.append(f"pcoeff >= 0 and icoeff > 0 (got pcoeff={layer.pcoeff}, icoeff={layer.icoeff})")
    if problems:
        raise ValueError(f"{name} needs " + "; ".join(problems) + ".")


def solve_settings(layer) -> dict:
    """The keyword arguments of `nderegs.solve` that a layer's fields fix."""
    return dict(
        stepsize_controller=diffrax.PIDController(
            rtol=layer.rtol, atol=layer.atol, pcoeff=layer.pcoeff, icoeff=layer.icoeff
        ),
        adjoint=layer.adjoint,
        max_steps=layer.max_steps,
        local=layer.local,
        stiffness=layer.stiffness,
        throw=layer.throw,
    )


class _BatchedField(eqx.Module):
    """The per-sample field applied to every sample of the batch (a Module, so the
    field's parameters stay visible to diffrax, e.g. to BacksolveAdjoint)."""

    field: Callable

    def __call__(self, t, y, args):
        return jax.vmap(self.field, in_axes=(None, 0, None))(t, y, args)


def time_concat(t, y: Array) -> Array:
    """[y; t]: the time-dependent input of the papers' vector fields."""
    return jnp.concatenate([y, jnp.broadcast_to(t, y.shape[:-1] + (1,)).astype(y.dtype)], -1)
