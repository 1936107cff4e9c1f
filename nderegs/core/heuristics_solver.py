"""A transparent solver wrapper that accumulates the per-step estimates.

The accumulators live in the solver state. diffeqsolve rolls the solver state back
when the controller rejects a step, so they sum over *accepted* steps only, and they
never touch `y`, `y_error` or the controller: the steps are exactly those of the
unwrapped solver.

The same mechanism samples one accepted step for local regularization without
storing the trajectory:

- "unbiased": a time t_reg ~ U[t0, t1) is drawn before the solve; the accepted step
  whose interval contains it is remembered.
- "biased": reservoir sampling over accepted steps: the n-th accepted step replaces
  the remembered one with probability 1/n (the uniform draw is keyed by n, so a
  rejected-then-retried step sees the same number), giving a step index uniform
  over all accepted steps.

Only the step's start time, end time and start state are remembered (the state a
constant, `stop_gradient`, unless `keep_start_gradient`: local_gradient="trajectory"
with biased sampling); the step itself is re-taken differentiably after the solve.
"""

from collections.abc import Callable
from typing import Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, PyTree

from .estimates import (
    drift_stiffness_estimate,
    scaled_error,
    StagePair,
    stiffness_estimate,
    times,
)

LocalSampling = Literal["unbiased", "biased"]


class StepEstimates(eqx.Module):
    """EEst·|dt| and S·|dt| of one step (`stiffness` is None without a stage pair)."""

    error: Float[Array, ""]
    stiffness: Float[Array, ""] | None
    raw_stiffness: Float[Array, ""] | None  # S itself, for the max over steps


def estimate_step(
    y0, y1, y_error, dense_info, t0, t1, *, rtol, atol, norm, pair: StagePair | None, drift=None
) -> StepEstimates:
    """The step's estimates; the stiffness from the stage pair, else from two drift
    evaluations when `drift(t, y)` is given (SDEs), else none."""
    abs_dt = jnp.abs(t1 - t0)
    error = times(scaled_error(y0, y1, y_error, rtol, atol, norm), abs_dt)
    if pair is not None:
        s = stiffness_estimate(dense_info["k"], pair, t1 - t0)
    elif drift is not None:
        s = drift_stiffness_estimate(drift, t1, y1, y_error)
    else:
        return StepEstimates(error=error, stiffness=None, raw_stiffness=None)
    return StepEstimates(error=error, stiffness=times(s, abs_dt), raw_stiffness=s)


def drift_of(terms, drift_index: int | None, args):
    """`(t, y) -> f(t, y)` of the drift term of an SDE `MultiTerm`, or None."""
    if drift_index is None:
        return None
    term = terms.terms[drift_index]
    return lambda t, y: term.vf(t, y, args)


class SampledStep(eqx.Module):
    """The accepted step remembered for local regularization (internal time)."""

    found: Bool[Array, ""]
    t_start: Float[Array, ""]
    t_end: Float[Array, ""]
    y_start: PyTree[Array]


class Accumulators(eqx.Module):
    error: Float[Array, ""]
    stiffness: Float[Array, ""] | None
    max_stiffness: Float[Array, ""] | None
    num_accepted: Int[Array, ""]
    sampled: SampledStep | None


class HeuristicsSolver(diffrax.AbstractWrappedSolver):
    """Wraps an adaptive solver; its state carries the accumulated estimates.

    `isinstance` checks are forwarded to the wrapped solver (diffrax's
    `AbstractWrappedSolver`), so diffeqsolve treats it exactly like the original.
    """

    solver: diffrax.AbstractSolver
    rtol: float | Array
    atol: float | Array
    norm: Callable = eqx.field(static=True)
    pair: StagePair | None = eqx.field(static=True)
    # SDEs: which term of the MultiTerm is the drift, when its stiffness is estimated.
    drift_index: int | None = eqx.field(static=True)
    local: LocalSampling | None = eqx.field(static=True)
    # Internal (direction-normalised) time: the target of unbiased sampling and the
    # end of the integration interval.
    local_target: Float[Array, ""] | None
    t_final: Float[Array, ""] | None
    local_key: PRNGKeyArray | None
    # True when the state is (y, integral channels): estimates see y only.
    augmented: bool = eqx.field(static=True, default=False)
    # The sampled step's start state keeps its gradient (through the solver).
    keep_start_gradient: bool = eqx.field(static=True, default=False)

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):  # pyright: ignore
        return self.solver.interpolation_cls

    @property
    def term_compatible_contr_kwargs(self):
        return self.solver.term_compatible_contr_kwargs

    @property
    def scan_kind(self):
        # DirectAdjoint/ForwardMode read the Runge–Kutta stage loop's kind and set it
        # with eqx.tree_at(lambda s: s.scan_kind, ...): forwarding the read makes that
        # write land on the wrapped solver.
        return self.solver.scan_kind  # pyright: ignore[reportAttributeAccessIssue]

    @property
    def root_finder(self):
        # Lets diffeqsolve hand the controller's tolerances to an implicit solver.
        return self.solver.root_finder  # pyright: ignore[reportAttributeAccessIssue]

    def order(self, terms):
        return self.solver.order(terms)

    def strong_order(self, terms):
        return self.solver.strong_order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)

    def _user_state(self, tree):
        return tree[0] if self.augmented else tree

    def init(self, terms, t0, t1, y0, args):
        inner = self.solver.init(terms, t0, t1, y0, args)
        y0 = self._user_state(y0)
        zero = jnp.zeros((), real_dtype(y0, default=jnp.result_type(t0)))
        has_stiffness = self.pair is not None or self.drift_index is not None
        sampled = None
        if self.local is not None:
            t0 = jnp.asarray(t0)
            sampled = SampledStep(
                found=jnp.array(False),
                t_start=t0,
                t_end=jnp.asarray(t1, dtype=t0.dtype),
                y_start=self._remembered(y0),
            )
        accumulators = Accumulators(
            error=zero,
            stiffness=zero if has_stiffness else None,
            max_stiffness=zero if has_stiffness else None,
            num_accepted=jnp.array(0, dtype=jnp.int32),
            sampled=sampled,
        )
        return inner, accumulators

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        inner, acc = solver_state
        y1, y_error, dense_info, inner, result = self.solver.step(
            terms, t0, t1, y0, args, inner, made_jump
        )
        if y_error is None and jtu.tree_leaves(y1):
            raise ValueError(
                f"nderegs.solve: {type(self.solver).__name__} returns no error estimate (no "
                "embedded pair), so neither an adaptive step-size controller nor the error "
                "regularizer can use it. Use a solver with an embedded pair: diffrax.Tsit5, "
                "Dopri5, Dopri8, Bosh3, Heun or an implicit Kvaerno (ODEs); SPaRK, ShARK, "
                "SRA1 or Heun (SDEs)."
            )
        out = (y1, y_error, dense_info)
        if self.augmented:
            assert y_error is not None  # refused above: the augmented state has leaves
            y0, y1, y_error = y0[0], y1[0], y_error[0]
            dense_info = dict(dense_info, k=dense_info["k"][0])
        est = estimate_step(
            y0,
            y1,
            y_error,
            dense_info,
            t0,
            t1,
            rtol=self.rtol,
            atol=self.atol,
            norm=self.norm,
            pair=self.pair,
            drift=drift_of(terms, self.drift_index, args),
        )
        num_accepted = acc.num_accepted + 1
        new_acc = Accumulators(
            error=acc.error + est.error.astype(acc.error.dtype),
            stiffness=None
            if acc.stiffness is None
            else acc.stiffness + est.stiffness.astype(acc.stiffness.dtype),  # pyright: ignore[reportOptionalMemberAccess]
            max_stiffness=None
            if acc.max_stiffness is None
            else jnp.maximum(acc.max_stiffness, est.raw_stiffness.astype(acc.max_stiffness.dtype)),  # pyright: ignore[reportOptionalMemberAccess]
            num_accepted=num_accepted,
            sampled=self._sample(acc.sampled, num_accepted, t0, t1, y0),
        )
        return *out, (inner, new_acc), result

    def _remembered(self, y0):
        return y0 if self.keep_start_gradient else jax.lax.stop_gradient(y0)

    def _sample(self, sampled, num_accepted, t0, t1, y0):
        if sampled is None:
            return None
        if self.local == "unbiased":
            # The first step ending after the target contains it (the last step
            # ends exactly at t_final, which also catches a rounding-level miss).
            take = jnp.logical_not(sampled.found) & (
                (self.local_target < t1) | (t1 >= self.t_final)
            )
        else:
            u = jax.random.uniform(jax.random.fold_in(self.local_key, num_accepted))  # pyright: ignore[reportArgumentType]
            take = u * num_accepted.astype(u.dtype) < 1
        keep = lambda new, old: jnp.where(take, new, old)
        return SampledStep(
            found=sampled.found | take,
            t_start=keep(jnp.asarray(t0, sampled.t_start.dtype), sampled.t_start),
            t_end=keep(jnp.asarray(t1, sampled.t_end.dtype), sampled.t_end),
            y_start=jtu.tree_map(keep, self._remembered(y0), sampled.y_start),
        )


def real_dtype(y0, default=None):
    """The real dtype of the state (complex128 -> float64); `default` (else the default
    float) for a state without leaves."""
    leaves = jtu.tree_leaves(y0)
    if leaves:
        dtype = jnp.result_type(*leaves)
    else:
        dtype = default if default is not None else jnp.result_type(float)
    return jnp.finfo(dtype).dtype
