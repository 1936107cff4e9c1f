"""`NeuralSDE`: dy = f(t, y) dt + g(t, y) ∘ dW over `nderegs.solve` (Stratonovich,
adaptive, on a `diffrax.VirtualBrownianTree`)."""

from collections.abc import Callable
import dataclasses
from typing import Any, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..core import Heuristics, solve
from .base import AbstractNeuralDE, BatchedField
from .solve_options import SolveOptions

#: A neural SDE's settings where they differ from `SolveOptions`' defaults.
_SDE_DEFAULTS = dict(solver=diffrax.SPaRK(), rtol=1e-3, atol=1e-3, dt0=0.01)


class DiagonalNoise(diffrax.ControlTerm):
    """Diagonal noise: the diffusion has the state's shape, dy = g ⊙ dW."""

    def prod(self, vf, control):
        return vf * control


class GeneralNoise(diffrax.ControlTerm):
    """General noise: the diffusion has shape (..., state, noise), dy = g · dW."""

    def prod(self, vf, control):
        return jnp.einsum("...dm,...m->...d", vf, control)


def _levy_area_for(solver) -> type:
    """The cheapest concrete Lévy area the solver accepts."""
    minimal = getattr(solver, "minimal_levy_area", diffrax.AbstractBrownianIncrement)
    for concrete in (
        diffrax.BrownianIncrement,
        diffrax.SpaceTimeLevyArea,
        diffrax.SpaceTimeTimeLevyArea,
    ):
        if issubclass(concrete, minimal):
            return concrete
    raise ValueError(
        f"No Brownian path with the Lévy area {minimal.__name__} needed by {type(solver).__name__}."
    )


class NeuralSDE(AbstractNeuralDE):
    """A neural SDE layer; `layer(y0, key=key) -> (y(t1), heuristics)`.

    `drift(t, y, args)` and `diffusion(t, y, args)` act on one sample (state of shape
    (d,)): with `noise="diagonal"` the diffusion returns shape (d,), with
    `noise="general"` shape (d, noise_dim). With `batched=True` the leading axis of
    `y0` is a batch solved as *one* system (one step size and one Brownian path of
    shape (batch, ...)), as the papers do.

    `key` is required: it draws the Brownian path (and, with `local`, the sampled step).
    The solve's settings are a [`SolveOptions`][nderegs.layers.SolveOptions], given as
    keywords or as `options=` (defaults here: SPaRK, rtol = atol = 1e-3, dt0 = 0.01).
    `solver` must be an adaptive SDE solver with an embedded error estimate (SPaRK,
    ShARK/SRA1 for additive noise, Heun, ...). `stiffness=True` adds the drift's
    stiffness estimate (two extra drift evaluations per attempted step, see
    `nderegs.solve`). `pcoeff`/`icoeff` are the `diffrax.PIDController`'s: SDE error
    estimates are rough, and a PI controller (e.g. pcoeff=0.1, icoeff=0.3) rejects
    fewer steps than the default I controller on average over Brownian paths (not on
    every path).

    Example:
        ```python
        sde = nderegs.NeuralSDE(drift, diffusion, solver=diffrax.SPaRK(), rtol=1e-2,
                                atol=1e-2, pcoeff=0.1, icoeff=0.3)
        y1, h = sde(y0_batch, key=key)             # a batch as one system
        ```

    References: Kidger, Foster, Li, Lyons, "Efficient and Accurate Gradients for Neural
    SDEs", NeurIPS 2021; Pal et al., ICML 2021 (error regularization of neural SDEs).
    """

    drift: Callable
    diffusion: Callable
    options: SolveOptions
    noise: Literal["diagonal", "general"] = eqx.field(static=True)
    noise_dim: int | None = eqx.field(static=True)
    brownian_tol: float = eqx.field(static=True)
    batched: bool = eqx.field(static=True)

    def __init__(
        self,
        drift: Callable,
        diffusion: Callable,
        *,
        options: SolveOptions | None = None,
        noise: Literal["diagonal", "general"] = "diagonal",
        noise_dim: int | None = None,
        brownian_tol: float = 1e-4,
        batched: bool = True,
        **settings: Any,
    ):
        """`settings`: the fields of `SolveOptions` (`rtol=`, `adjoint=`, ...), replacing
        those of `options` (default: SPaRK at rtol = atol = 1e-3 from dt0 = 0.01)."""
        self.drift = drift
        self.diffusion = diffusion
        self.options = SolveOptions.of(options, _SDE_DEFAULTS, settings)
        self.noise = noise
        self.noise_dim = noise_dim
        self.brownian_tol = brownian_tol
        self.batched = batched

    def __check_init__(self):
        if self.noise not in ("diagonal", "general"):
            raise ValueError(f"noise must be 'diagonal' or 'general'; got {self.noise!r}.")
        if self.noise == "general" and not self.noise_dim:
            raise ValueError("NeuralSDE(noise='general') needs noise_dim (the Brownian dimension).")
        solver = self.options.solver
        if not isinstance(solver, (diffrax.AbstractItoSolver, diffrax.AbstractStratonovichSolver)):
            # e.g. options shared with a NeuralODE: SolveOptions' default solver is Tsit5.
            raise ValueError(
                f"NeuralSDE needs an SDE solver (an Itô or Stratonovich diffrax solver with "
                f"an error estimate: SPaRK, ShARK, SRA1, Heun, ...); got "
                f"{type(solver).__name__}, which solves ODEs only."
            )

    def vector_fields(self) -> dict[str, Callable]:
        return {"drift": self.drift, "diffusion": self.diffusion}

    def for_evaluation(self) -> "NeuralSDE":
        return dataclasses.replace(self, options=self.options.for_evaluation())

    def _brownian_shape(self, y0: Array) -> tuple[int, ...]:
        if self.noise == "diagonal":
            return y0.shape
        assert self.noise_dim is not None  # checked in __check_init__
        return y0.shape[:-1] + (self.noise_dim,)

    def terms(self, y0: Array, key) -> diffrax.MultiTerm:
        """Drift and diffusion terms on a Brownian path drawn from `key`."""
        t0, t1 = self.options.t0, self.options.t1
        brownian = diffrax.VirtualBrownianTree(
            min(t0, t1),
            max(t0, t1),
            tol=self.brownian_tol,
            shape=jax.ShapeDtypeStruct(self._brownian_shape(y0), y0.dtype),
            key=key,
            levy_area=_levy_area_for(self.options.solver),
        )
        drift, diffusion = self.drift, self.diffusion
        if self.batched:
            drift, diffusion = BatchedField(drift), BatchedField(diffusion)
        noise_term = DiagonalNoise if self.noise == "diagonal" else GeneralNoise
        return diffrax.MultiTerm(diffrax.ODETerm(drift), noise_term(diffusion, brownian))

    def solve(
        self, y0: Array, *, key, args=None, ts: Array | None = None
    ) -> tuple[diffrax.Solution, Heuristics]:
        if key is None:
            raise ValueError("NeuralSDE needs key=... to draw its Brownian path.")
        self.check_trainable(args)
        if self.batched and y0.ndim < 2:
            raise ValueError(
                f"NeuralSDE(batched=True) expects y0 of shape (batch, d); got {y0.shape}."
            )
        brownian_key, solve_key = jax.random.split(key)
        saveat = diffrax.SaveAt(t1=True) if ts is None else diffrax.SaveAt(ts=ts)
        options = self.options
        return solve(
            self.terms(y0, brownian_key),
            options.solver,
            options.t0,
            options.t1,
            options.dt0,
            y0,
            args,
            saveat=saveat,
            key=solve_key if options.local is not None else None,
            **options.solve_kwargs(),
        )

    def __call__(self, y0: Array, *, key, args=None, ts: Array | None = None):
        """`(y(t1), h)`, or `(y(ts), h)` with a leading time axis when `ts` is given."""
        sol, h = self.solve(y0, key=key, args=args, ts=ts)
        assert sol.ys is not None  # saved at t1 or at ts
        return (sol.ys[0] if ts is None else sol.ys), h

    def sample(self, y0: Array, *, key, num_trajectories: int, args=None, ts=None):
        """`num_trajectories` independent paths per sample of the batch, solved as one
        system of `num_trajectories·batch` states; returns the outputs with a leading
        trajectory axis, and the heuristics of that one solve."""
        if not self.batched:
            raise ValueError("NeuralSDE.sample needs batched=True.")
        stacked = jnp.tile(y0, (num_trajectories,) + (1,) * (y0.ndim - 1))
        out, h = self(stacked, key=key, args=args, ts=ts)
        assert out is not None
        if ts is None:
            return out.reshape((num_trajectories,) + y0.shape), h
        return out.reshape((out.shape[0], num_trajectories) + y0.shape), h


#: Builds a layer around a model's drift and diffusion, e.g.
#: `functools.partial(NeuralSDE, rtol=1e-2, atol=1e-2)`: `make_sde(drift, diffusion)`.
MakeSDE = Callable[..., NeuralSDE]
