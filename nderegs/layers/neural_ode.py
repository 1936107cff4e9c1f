"""`NeuralODE`: a Julia-style (DiffEqFlux) neural ODE layer over `nderegs.solve`."""

from collections.abc import Callable
import dataclasses
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree

from ..core import AbstractIntegral, Heuristics, solve
from .base import AbstractNeuralDE, BatchedField
from .solve_options import SolveOptions


class NeuralODE(AbstractNeuralDE):
    """y' = f(t, y, args) on [t0, t1]; `layer(y0) -> (y(t1), heuristics)`.

    `vector_field(t, y, args)` acts on one sample. With `batched=True` (default) the
    leading axis of `y0` is a batch that is solved as *one* system (the vector field
    is vmapped over it inside the solve), as the papers do: one step size for the
    batch, and the NFE is per batch.

    The solve's settings are a [`SolveOptions`][nderegs.layers.SolveOptions], given
    as keywords (`rtol=`, `atol=`, `solver=`, `adjoint=`, `local=`, `stiffness=`,
    `throw=`, ...) or as `options=`: the tolerances define the error estimate (EEst)
    as well as the steps; `local` ("unbiased" | "biased") samples one step for local
    regularization and then needs `key=` at call time.

    `integrals` (e.g. `(nderegs.KineticEnergy(),)`) are integrated along the solve and
    reported in `h.integrals`. `steer=b` is STEER (Ghosh et al. 2020): when a `key` is
    given (training) the end time is drawn t1' ~ U(t1 − b, t1 + b); without a key
    (evaluation) the solve ends at t1.

    Example:
        ```python
        field = nderegs.models.TimeMLP(2, 64, 2, key=key)   # a Module: f(t, y) = MLP([y; t])
        node = nderegs.NeuralODE(field, rtol=1e-6, atol=1e-6)
        y1, h = node(y0_batch)                    # (batch, 2), Heuristics
        loss = jnp.mean((y1 - target) ** 2) + 0.1 * h.error
        ```

    The field must be a pytree that holds its parameters (an equinox Module), so that
    `eqx.filter_grad` reaches them; a closure such as `lambda t, y, args: mlp(y)`
    hides them, and the layer warns (`ParameterlessFieldWarning`).

    References: Chen, Rubanova, Bettencourt, Duvenaud, "Neural Ordinary Differential
    Equations", NeurIPS 2018; Rackauckas et al., "DiffEqFlux.jl" (the layer's feel);
    Ghosh, Behl, Dupont, Torr, Namboodiri, "STEER: Simple Temporal Regularization For
    Neural ODEs", NeurIPS 2020.
    """

    vector_field: Callable
    options: SolveOptions
    integrals: tuple[AbstractIntegral, ...]
    steer: float = eqx.field(static=True)
    batched: bool = eqx.field(static=True)

    def __init__(
        self,
        vector_field: Callable,
        *,
        options: SolveOptions | None = None,
        integrals: tuple[AbstractIntegral, ...] = (),
        steer: float = 0.0,
        batched: bool = True,
        **settings: Any,
    ):
        """`settings`: the fields of `SolveOptions` (`rtol=`, `adjoint=`, ...), replacing
        those of `options` (default: `SolveOptions()`)."""
        self.vector_field = vector_field
        self.options = SolveOptions.of(options, {}, settings)
        self.integrals = integrals
        self.steer = steer
        self.batched = batched

    def __check_init__(self):
        t0, t1 = self.options.t0, self.options.t1
        if not 0 <= self.steer < abs(t1 - t0):
            raise ValueError(
                f"NeuralODE(steer=b) needs 0 <= b < |t1 - t0| = {abs(t1 - t0)}; got b={self.steer}."
            )

    def vector_fields(self) -> dict[str, Callable]:
        return {"vector_field": self.vector_field}

    def for_evaluation(self) -> "NeuralODE":
        return dataclasses.replace(self, options=self.options.for_evaluation(), integrals=())

    def _term(self) -> diffrax.ODETerm:
        if not self.batched:
            return diffrax.ODETerm(self.vector_field)
        return diffrax.ODETerm(BatchedField(self.vector_field))

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
        self.check_trainable(args)
        if self.batched:
            leaves = jax.tree_util.tree_leaves(y0)
            sizes = {x.shape[0] if x.ndim >= 2 else None for x in leaves}
            if None in sizes or len(sizes) != 1:
                raise ValueError(
                    "NeuralODE(batched=True) expects every leaf of y0 to have shape "
                    "(batch, ...) with a shared batch size, the vector field acting on one "
                    f"sample of at least one dimension; got shapes {[x.shape for x in leaves]}. "
                    "For a single state, or under jax.vmap (which removes the batch axis), "
                    "use NeuralODE(..., batched=False)."
                )
        options = self.options
        end = options.t1 if t1 is None else t1
        if key is not None:
            key, steer_key = jax.random.split(key)
            if self.steer > 0 and t1 is None:
                end = self.sample_end_time(steer_key)
        saveat = diffrax.SaveAt(t1=True) if ts is None else diffrax.SaveAt(ts=ts)
        return solve(
            self._term(),
            options.solver,
            options.t0,
            end,
            options.dt0,
            y0,
            args,
            saveat=saveat,
            key=key,
            integrals=self.integrals,
            **options.solve_kwargs(),
        )

    def sample_end_time(self, key):
        """STEER's training end time t1' ~ U(t1 − b, t1 + b)."""
        return self.options.t1 + jax.random.uniform(key, minval=-self.steer, maxval=self.steer)

    def __call__(
        self, y0: PyTree[Array], *, args: PyTree = None, ts: Array | None = None, key=None
    ) -> tuple[PyTree[Array], Heuristics]:
        """`(y(t1), h)`, or `(y(ts), h)` with a leading time axis when `ts` is given."""
        sol, h = self.solve(y0, args=args, ts=ts, key=key)
        if ts is None:
            return jax.tree_util.tree_map(lambda y: y[0], sol.ys), h
        return sol.ys, h


def time_concat(t, y: Array) -> Array:
    """[y; t]: the time-dependent input of the papers' vector fields."""
    return jnp.concatenate([y, jnp.broadcast_to(t, y.shape[:-1] + (1,)).astype(y.dtype)], -1)


#: Builds a layer around a model's vector field, e.g.
#: `functools.partial(NeuralODE, rtol=1e-8, atol=1e-8)`: `make_node(vector_field)`.
MakeNode = Callable[..., NeuralODE]
