"""`CNF`: a continuous normalizing flow (FFJORD) over `nderegs.solve`."""

from collections.abc import Callable
import dataclasses
import math
from typing import Any, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, PyTree

from ..core import AbstractIntegral, Heuristics, solve
from .base import AbstractNeuralDE
from .flow_dynamics import FlowDynamics, on_flow
from .solve_options import SolveOptions

TraceEstimator = Literal["exact", "hutchinson"]
NoiseKind = Literal["rademacher", "gaussian"]


def standard_normal_log_prob(z: Array) -> Array:
    """log N(z; 0, I) per sample of a batch `(batch, dim)`."""
    return -0.5 * jnp.sum(z**2, -1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


class CNF(AbstractNeuralDE):
    r"""A continuous normalizing flow (FFJORD): data x = z(t0) flows along
    z' = f(t, z) to z(t1), whose law is the standard normal, and the log-density
    changes by the instantaneous change of variables,

    $$\log p(x) = \log \mathcal{N}(z(t_1); 0, I)
        + \int_{t_0}^{t_1} \operatorname{tr} \frac{\partial f}{\partial z}(t, z(t))\, dt.$$

    `vector_field(t, z, args)` acts on one sample `z` of shape `(dim,)`; the layer
    works on batches `(batch, dim)`, solved as one system (one step size for the
    batch, as FFJORD does). The solve carries the augmented state (z, Δ) with
    Δ' = −tr ∂f/∂z, and the step-size controller's norm covers the whole augmented
    state, log-density channel included, as FFJORD's. So do the solver heuristics:
    `h.error` is the error estimate of (z, Δ).

    `trace="exact"` computes the trace with `dim` Jacobian-vector products per
    evaluation (cheap for small `dim`); `"hutchinson"` uses Hutchinson's unbiased
    estimate ε^T (∂f/∂z) ε with `noise` "rademacher" or "gaussian" ε, drawn once per
    solve from `key` (the same ε for every stage and step of one solve). Evaluation
    (`for_evaluation`) always uses the exact trace.

    `integrals` (`nderegs.KineticEnergy()`, `nderegs.JacobianFrobenius()`,
    `nderegs.TaylorDerivative()`) are integrated over the flow z only, not over Δ:
    RNODE's kinetic energy ∫‖f‖² and Jacobian Frobenius norm ∫‖ε^T ∂f/∂z‖², and
    TayNODE's ∫‖d^K z/dt^K‖². `steer=b` draws the training end time from
    U(t1 − b, t1 + b) when a key is given. The solve settings (tolerances, adjoint,
    `local`, `stiffness`, `throw`) are those of [`nderegs.NeuralODE`][].

    Example:
        ```python
        field = nderegs.models.ConcatSquashMLP(2, 64, 3, key=key)
        cnf = nderegs.CNF(field, dim=2, rtol=1e-5, atol=1e-5)
        log_p, h = cnf.log_prob(x)                 # (batch,), Heuristics
        loss = -jnp.mean(log_p) + 0.1 * h.error
        samples = cnf.sample(jax.random.key(1), 1000)
        ```

    References: Chen, Rubanova, Bettencourt, Duvenaud, "Neural Ordinary Differential
    Equations", NeurIPS 2018; Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud,
    "FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models",
    ICLR 2019; Hutchinson, "A stochastic estimator of the trace of the influence
    matrix for Laplacian smoothing splines", 1990.
    """

    vector_field: Callable
    dim: int = eqx.field(static=True)
    options: SolveOptions
    integrals: tuple[AbstractIntegral, ...]
    steer: float = eqx.field(static=True)
    trace: TraceEstimator = eqx.field(static=True)
    noise: NoiseKind = eqx.field(static=True)
    batched: bool = eqx.field(static=True)

    def __init__(
        self,
        vector_field: Callable,
        dim: int,
        *,
        options: SolveOptions | None = None,
        integrals: tuple[AbstractIntegral, ...] = (),
        steer: float = 0.0,
        trace: TraceEstimator = "exact",
        noise: NoiseKind = "rademacher",
        batched: bool = True,
        **settings: Any,
    ):
        """`settings`: the fields of `SolveOptions` (`rtol=`, `adjoint=`, ...), replacing
        those of `options` (default: `SolveOptions(rtol=1e-5, atol=1e-5)`)."""
        self.vector_field = vector_field
        self.dim = dim
        self.options = SolveOptions.of(options, dict(rtol=1e-5, atol=1e-5), settings)
        self.integrals = integrals
        self.steer = steer
        self.trace = trace
        self.noise = noise
        self.batched = batched

    def __check_init__(self):
        problems = []
        if not (isinstance(self.dim, int) and self.dim >= 1):
            problems.append(f"dim a positive integer (got {self.dim!r})")
        if not self.batched:
            problems.append("batched=True: it flows batches of shape (batch, dim)")
        if self.trace not in ("exact", "hutchinson"):
            problems.append(f"trace 'exact' or 'hutchinson' (got {self.trace!r})")
        if self.noise not in ("rademacher", "gaussian"):
            problems.append(f"noise 'rademacher' or 'gaussian' (got {self.noise!r})")
        span = abs(self.options.t1 - self.options.t0)
        if not 0 <= self.steer < span:
            problems.append(f"0 <= steer < |t1 - t0| = {span} (got {self.steer})")
        if problems:
            raise ValueError("CNF needs " + "; ".join(problems) + ".")

    def vector_fields(self) -> dict[str, Callable]:
        return {"vector_field": self.vector_field}

    def for_evaluation(self) -> "CNF":
        """Exact trace, no local sampling, no integrals, no stiffness estimate."""
        return dataclasses.replace(
            self, options=self.options.for_evaluation(), integrals=(), trace="exact", steer=0.0
        )

    def _check_batch(self, x: Array, what: str) -> None:
        if x.ndim != 2 or x.shape[-1] != self.dim:
            raise ValueError(
                f"CNF.{what} expects a batch of shape (batch, {self.dim}) (dim={self.dim}); "
                f"got shape {x.shape}."
            )

    def _draw_noise(self, key: PRNGKeyArray | None, z: Array) -> Array | None:
        if self.trace == "exact":
            return None
        if key is None:
            raise ValueError(
                "CNF(trace='hutchinson') draws its trace noise once per solve, so it needs "
                "key=jax.random.key(...); use trace='exact' (or `for_evaluation()`) "
                "without a key."
            )
        if self.noise == "rademacher":
            return jax.random.rademacher(key, z.shape, dtype=z.dtype)
        return jax.random.normal(key, z.shape, dtype=z.dtype)

    def solve(
        self,
        x: Array,
        delta0: Array | None = None,
        *,
        args: PyTree = None,
        key: PRNGKeyArray | None = None,
        reverse: bool = False,
    ) -> tuple[diffrax.Solution, Heuristics]:
        """The solve of the augmented state from `(x, delta0)` (Δ = 0 if not given):
        from t0 to t1 (data → base), or with `reverse=True` from t1 back to t0
        (base → data). Returns the full `(diffrax.Solution, Heuristics)`; `sol.ys` is
        `(z, Δ)` at the end time, with a leading time axis of length 1."""
        self._check_batch(x, "solve")
        self.check_trainable(args)
        needs_key = [type(i).__name__ for i in self.integrals if i.needs_key]
        if needs_key and key is None:
            raise ValueError(
                f"CNF: {', '.join(needs_key)} draws random noise, so it needs "
                "key=jax.random.key(...)."
            )
        if delta0 is None:
            delta0 = jnp.zeros(x.shape[:1], x.dtype)
        noise_key = steer_key = solve_key = None
        if key is not None:
            noise_key, steer_key, solve_key = jax.random.split(key, 3)
        options = self.options
        start, end = options.t0, options.t1
        if self.steer > 0 and steer_key is not None and not reverse:
            end = options.t1 + jax.random.uniform(steer_key, minval=-self.steer, maxval=self.steer)
        if reverse:
            start, end = end, start
        dynamics = FlowDynamics(self.vector_field, self._draw_noise(noise_key, x))
        return solve(
            diffrax.ODETerm(dynamics),
            options.solver,
            start,
            end,
            options.dt0,
            (x, delta0),
            args,
            saveat=diffrax.SaveAt(t1=True),
            key=solve_key,
            integrals=tuple(on_flow(i) for i in self.integrals),
            **options.solve_kwargs(),
        )

    def transport(
        self,
        z: Array,
        *,
        reverse: bool = False,
        args: PyTree = None,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Array, Heuristics]:
        """The flow of `z` `(batch, dim)` alone, without the log-density channel: from
        t0 to t1 (data → base), or with `reverse=True` from t1 to t0 (base → data, the
        sampling solve). It solves z' = f(t, z) with the layer's settings (its local and
        stiffness estimates included, so a regularizer of the sampling solve reads `h`);
        it is the cheaper solve of sampling when no density is wanted, and its steps are
        those of the sampling NFE that `DensityTask` reports. Returns `(z(end), h)`."""
        self._check_batch(z, "transport")
        self.check_trainable(args)
        options = self.options
        start, end = (options.t1, options.t0) if reverse else (options.t0, options.t1)
        flow = FlowDynamics(self.vector_field, None).flow
        sol, h = solve(
            diffrax.ODETerm(flow),
            options.solver,
            start,
            end,
            options.dt0,
            z,
            args,
            saveat=diffrax.SaveAt(t1=True),
            key=key,
            integrals=self.integrals,
            **options.solve_kwargs(),
        )
        assert sol.ys is not None
        return sol.ys[0], h

    def log_prob(
        self, x: Array, *, args: PyTree = None, key: PRNGKeyArray | None = None
    ) -> tuple[Array, Heuristics]:
        """log p(x) per sample of `x` `(batch, dim)`, and the solve's heuristics."""
        sol, h = self.solve(x, args=args, key=key)
        assert sol.ys is not None
        z1, delta = sol.ys[0][0], sol.ys[1][0]
        return standard_normal_log_prob(z1) - delta, h

    def sample_and_log_prob(
        self, key: PRNGKeyArray, n: int, *, args: PyTree = None, dtype=None
    ) -> tuple[Array, Array, Heuristics]:
        """`n` samples x (base → data, solved backwards from t1 to t0), the log-density
        log p(x) the solve carries along, and its heuristics (the evaluation solve:
        exact trace)."""
        if not (isinstance(n, int) and n >= 1):
            raise ValueError(f"CNF.sample needs a positive integer n; got {n!r}.")
        dtype = jnp.result_type(float) if dtype is None else dtype
        z1 = jax.random.normal(key, (n, self.dim), dtype)
        sol, h = self.for_evaluation().solve(
            z1, standard_normal_log_prob(z1), args=args, reverse=True
        )
        assert sol.ys is not None
        return sol.ys[0][0], sol.ys[1][0], h

    def sample(self, key: PRNGKeyArray, n: int, *, args: PyTree = None, dtype=None) -> Array:
        """`n` samples of the flow's density, shape `(n, dim)`."""
        x, _, _ = self.sample_and_log_prob(key, n, args=args, dtype=dtype)
        return x
