"""A transparent step-size controller wrapper that counts first-stage evaluations.

The solver's state is rolled back on a rejected step, so anything that must count
*attempts* (rejected ones included) lives here: the controller sees every attempt
and its state is never rolled back. The wrapper forwards every decision unchanged;
it never touches the error norm, the accept/reject decision or the initial step.
When the state carries integral channels, the wrapped controller sees only the
user's state, so those channels never influence the steps.
"""

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int, PyTree


class CountingState(eqx.Module):
    inner: PyTree
    any_accepted: Bool[Array, ""]
    # The `made_jump` flag the next attempt will see (the loop keeps the previous
    # value on a rejection, exactly as tracked here).
    jump_pending: Bool[Array, ""]
    first_stage_evaluations: Int[Array, ""]


class EvaluationCountingController(diffrax.AbstractAdaptiveStepSizeController):
    """Wraps an adaptive controller; counts attempts that evaluate their first stage
    (before the first accepted step, or right after a jump). See
    `nderegs.core.nfe` for how this becomes the NFE."""

    controller: diffrax.AbstractAdaptiveStepSizeController
    # True when the state is (y, integral channels): the controller sees y only.
    augmented: bool = eqx.field(static=True, default=False)

    @property
    def rtol(self):
        return self.controller.rtol

    @property
    def atol(self):
        return self.controller.atol

    @property
    def norm(self) -> Callable:  # pyright: ignore[reportIncompatibleVariableOverride]
        return self.controller.norm

    def wrap(self, direction):
        return EvaluationCountingController(self.controller.wrap(direction), self.augmented)  # pyright: ignore[reportCallIssue]

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        if self.augmented:
            channels = y0[1]
            y0 = y0[0]
            user_func = func
            func = lambda terms, t, y, args: user_func(terms, t, (y, channels), args)[0]
        tnext, inner = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
        state = CountingState(
            inner=inner,
            any_accepted=jnp.array(False),
            jump_pending=jnp.array(False),
            first_stage_evaluations=jnp.array(0, dtype=jnp.int32),
        )
        return tnext, state

    def adapt_step_size(
        self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state
    ):
        state = controller_state
        evaluates_first_stage = jnp.logical_not(state.any_accepted) | state.jump_pending
        if self.augmented:
            assert y_error is not None  # HeuristicsSolver refuses solvers without a pair
            y0, y1_candidate, y_error = y0[0], y1_candidate[0], y_error[0]
        (keep_step, tprev, tnext, made_jump, inner, result) = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, state.inner
        )
        new_state = CountingState(
            inner=inner,
            any_accepted=state.any_accepted | keep_step,
            jump_pending=jnp.where(keep_step, made_jump, state.jump_pending),
            first_stage_evaluations=state.first_stage_evaluations
            + evaluates_first_stage.astype(jnp.int32),
        )
        return keep_step, tprev, tnext, made_jump, new_state, result
