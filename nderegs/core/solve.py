"""`nderegs.solve`: `diffrax.diffeqsolve` plus the solver's own heuristics."""

from collections.abc import Sequence
import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, PyTree
import numpy as np

from .backward_count import (
    active_probe,
    backsolve_counting_refusal,
    BackwardCount,
    CountingBacksolveAdjoint,
    report_to_probe,
    with_probe,
)
from .backward_nfe import backward_cost
from .counting_controller import EvaluationCountingController
from .estimates import find_stage_pair
from .heuristics import Heuristics
from .heuristics_solver import drift_of, estimate_step, HeuristicsSolver, real_dtype
from .integrals import AbstractIntegral, AugmentedField
from .nfe import step_cost

LOCAL_SAMPLINGS = ("unbiased", "biased")
LOCAL_GRADIENTS = ("step", "trajectory")
_save_y = diffrax.SaveAt(t1=True).subs.fn
# Adjoints that differentiate through the solver's internal steps, so the global
# estimates (built from those steps) get true discretise-then-optimise gradients.
_DIFFERENTIATE_THROUGH_SOLVER = (
    diffrax.RecursiveCheckpointAdjoint,
    diffrax.DirectAdjoint,
    diffrax.ForwardMode,
)


def solve(
    terms: PyTree[diffrax.AbstractTerm],
    solver: diffrax.AbstractSolver,
    t0,
    t1,
    dt0,
    y0: PyTree,
    args: PyTree = None,
    *,
    stepsize_controller: diffrax.AbstractAdaptiveStepSizeController,
    saveat: diffrax.SaveAt | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
    max_steps: int | None = 4096,
    local: str | None = None,
    local_gradient: str = "step",
    key=None,
    stiffness: bool | None = None,
    integrals: Sequence[AbstractIntegral] = (),
    backward_count: BackwardCount | None = None,
    **diffeqsolve_kwargs,
) -> tuple[diffrax.Solution, Heuristics]:
    r"""Solve like `diffrax.diffeqsolve` and return the solver's heuristics too.

    Returns `(sol, h)`: `sol` is the `diffrax.Solution` that `diffrax.diffeqsolve`
    returns for the same arguments — bitwise for explicit solvers; for implicit ones the
    same step counts and `ts`, `ys` within rtol 1e-4, atol 1e-5 (the wrapper changes the
    compiled program, so the last bit of the implicit step's `y_error` can differ and
    move a step) — `h` a
    [`nderegs.Heuristics`][] with R_E, R_S, the NFE and, with `local=`, the estimates
    of one sampled accepted step.

    Every argument of `diffeqsolve` is accepted except `controller_state=`. With
    `adjoint=diffrax.ImplicitAdjoint()` (which saves nothing but y(t1)) the solve is
    diffeqsolve's own and `h.error`, `h.stiffness`, `h.nfe` are None.

    Arguments beyond `diffeqsolve`'s:

    - `local`: None, "unbiased" (t ~ U[t0, t1]; the accepted step containing t) or
      "biased" (a step drawn uniformly from the accepted steps). That step is re-taken
      with its own dt, differentiably, after the solve, from its start state (a
      constant unless `local_gradient="trajectory"`); so the main solve may use any
      adjoint.
    - `local_gradient`: what the local estimate is differentiated through.
      "step" (default; paper 2's estimator): the re-taken step only, its start state a
      constant. "trajectory": also the state the step starts from, so the gradient can
      move the trajectory to where steps are cheap. Unbiased sampling then draws t
      before the solve, the solve saves y(t) (an extra save point, removed from the
      returned `sol`), and the step of the accepted dt containing t is taken from
      (t, y(t)), ending at t1 at the latest: works with every adjoint,
      `BacksolveAdjoint` included. Biased
      sampling (t known only after the solve) re-takes the sampled step from its start
      state carried through the solver, so it needs an adjoint that differentiates
      through the solver (RecursiveCheckpoint, Direct, ForwardMode); any other raises.
      (Unbiased "trajectory" samples average to ∫ EEst(t) dt rather than R_E: the step
      starts at t, not at the accepted step's start; see `Heuristics`.)
    - `key`: a PRNG key, required with `local` and with integrals that draw noise.
    - `integrals`: [`nderegs.KineticEnergy`][], [`nderegs.JacobianFrobenius`][],
      [`nderegs.TaylorDerivative`][], ...: integrals along the trajectory, carried as
      extra state channels that take no part in step-size control (the steps stay
      those of the plain solve); reported in `h.integrals` in the same order. Needs a
      single `diffrax.ODETerm` and a `SaveAt` of `t0`/`t1`/`ts` with the default `fn`.
    - `backward_count`: a [`nderegs.BackwardCount`][] probe (zeros) the caller
      differentiates with respect to; its gradient receives this solve's backward-pass
      evaluations and VJPs, for `RecursiveCheckpointAdjoint`, `DirectAdjoint` and
      `BacksolveAdjoint` (NaN for solves it cannot count). Defaults to the probe of an
      enclosing `nderegs.core.backward_count.counting_backward`, if any.
    - `stiffness`: True to require the stiffness estimate (error if the solver has no
      pair of stages with equal abscissa), False to skip it, None (default) for
      "when the solver has one" (Tsit5, Dopri5, Dopri8, ...).

    The global estimates of an ODE cost no vector-field evaluation; re-taking the local
    step costs one step's stages (`h.local_nfe`).

    SDEs (`MultiTerm(ODETerm(drift), ControlTerm(diffusion, VirtualBrownianTree))`
    with an adaptive SDE solver: SPaRK, ShARK, SRA1, Heun, ...): the error estimates
    are exact as above (and the local step is re-taken on the same Brownian path). The
    stiffness is that of the drift: the solver's stages mix drift and diffusion (RK)
    or are not returned (SRK), so it costs two extra drift evaluations per attempted
    step, counted in `nfe`, and is computed only with stiffness=True. `nfe` counts
    drift evaluations.

    The maths (h = |dt_j|, accepted steps j):

    $$R_E = \sum_j \mathrm{EEst}_j\, h_j, \quad
      \mathrm{EEst}_j = \Big\lVert \frac{\tilde y_{j+1} - y_{j+1}}{\mathrm{atol} +
      \mathrm{rtol}\max(|y_j|, |y_{j+1}|)}\Big\rVert_\text{rms}, \qquad
      R_S = \sum_j \frac{\lVert k_b - k_a\rVert}{h_j \lVert g_b - g_a\rVert} h_j .$$

    Example:
        ```python
        term = diffrax.ODETerm(lambda t, y, model: model(y))
        sol, h = nderegs.solve(term, diffrax.Tsit5(), 0.0, 1.0, None, y0, model,
                               stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6))
        loss = jnp.mean((sol.ys[-1] - target) ** 2) + 0.1 * h.error
        ```

    References: Pal, Ma, Shah, Rackauckas, "Opening the Blackbox: Accelerating Neural
    Differential Equations by Regularizing Internal Solver Heuristics", ICML 2021;
    Pal, Edelman, Rackauckas, "Locally Regularized Neural Differential Equations: Some
    Black Boxes Were Meant to Remain Closed!", ICML 2023; Kidger, "On Neural
    Differential Equations", 2021 (diffrax).
    """
    integrals = tuple(integrals)
    _check_arguments(stepsize_controller, local, local_gradient, key, integrals, stiffness)
    if backward_count is not None and not isinstance(backward_count, BackwardCount):
        raise TypeError(
            "backward_count= takes the probe nderegs.BackwardCount.probe() (differentiate "
            f"with respect to it to read the counts); got {type(backward_count).__name__}."
        )
    probe = backward_count if backward_count is not None else active_probe()
    if isinstance(adjoint, diffrax.ForwardMode):
        probe = None  # forward mode: no backward pass to count
    if isinstance(adjoint, diffrax.ImplicitAdjoint):
        return _implicit_solve(
            probe,
            terms,
            solver,
            t0,
            t1,
            dt0,
            y0,
            args,
            stepsize_controller,
            saveat,
            adjoint,
            max_steps,
            local,
            integrals,
            stiffness,
            diffeqsolve_kwargs,
        )
    pair, drift_index = _stiffness_source(solver, terms, stiffness)
    y0 = _check_finite(y0)
    if saveat is None:
        saveat = diffrax.SaveAt(t1=True)
    if adjoint is None:
        adjoint = diffrax.RecursiveCheckpointAdjoint()
    through_solver = isinstance(adjoint, _DIFFERENTIATE_THROUGH_SOLVER)
    if local == "biased" and local_gradient == "trajectory" and not through_solver:
        raise ValueError(
            "nderegs.solve: local='biased' with local_gradient='trajectory' needs the "
            "gradient of the sampled step's start state through the solver, which "
            f"{type(adjoint).__name__} does not give. Use local='unbiased' (which saves y(t) "
            "and works with every adjoint), local_gradient='step', or "
            "adjoint=diffrax.RecursiveCheckpointAdjoint()."
        )
    save_local_state = local == "unbiased" and local_gradient == "trajectory"
    counted_by_backsolve = False
    if isinstance(adjoint, diffrax.BacksolveAdjoint):
        # The backward solve defaults to the forward solver and controller: give it
        # the user's own, not our wrappers.
        backward = {
            **dict(solver=solver, stepsize_controller=stepsize_controller),
            **adjoint.kwargs,
        }
        adjoint = diffrax.BacksolveAdjoint(**backward)
        if probe is not None:
            refusal = backsolve_counting_refusal(
                terms, args, y0, t0, t1, backward["solver"], backward["stepsize_controller"]
            ) or _integrals_refusal(integrals)
            if refusal is not None and backward_count is not None:
                raise ValueError(f"nderegs.solve: backward_count= {refusal}")
            if refusal is None:
                # In the state's dtype: the adjoint state carries the probe's channel.
                in_state_dtype = jtu.tree_map(lambda p: p.astype(real_dtype(y0)), probe)
                terms, args = with_probe(terms, args, in_state_dtype)
                adjoint = CountingBacksolveAdjoint(**backward)
                counted_by_backsolve = True

    local_key = integral_key = None
    if key is not None:
        local_key, integral_key = jax.random.split(key)
    user_terms, user_y0, user_saveat = terms, y0, saveat
    if integrals:
        terms, y0, saveat = _with_integral_channels(terms, y0, saveat, integrals, integral_key)

    time_dtype = _time_dtype(t0, t1, dt0, saveat)
    # In the time dtype: strict promotion refuses int * float (the values are ±1, so
    # standard promotion gives the same numbers).
    direction = jnp.where(jnp.asarray(t0) < jnp.asarray(t1), 1, -1).astype(time_dtype)
    local_t = local_target = None
    if local == "unbiased":
        assert local_key is not None  # _check_arguments asked for a key
        u = jax.random.uniform(local_key, dtype=time_dtype)
        start, end = jnp.asarray(t0, time_dtype), jnp.asarray(t1, time_dtype)
        local_t = jax.lax.stop_gradient(start + u * (end - start))
        local_target = local_t * direction
    wrapped_solver = HeuristicsSolver(
        solver=solver,
        rtol=stepsize_controller.rtol,  # pyright: ignore[reportArgumentType]
        atol=stepsize_controller.atol,  # pyright: ignore[reportArgumentType]
        norm=stepsize_controller.norm,
        pair=pair,
        drift_index=drift_index,
        local=local,  # pyright: ignore[reportArgumentType] (checked above)
        local_target=local_target,
        t_final=None if local is None else jnp.asarray(t1, time_dtype) * direction,
        local_key=local_key if local == "biased" else None,
        augmented=bool(integrals),
        keep_start_gradient=local == "biased" and local_gradient == "trajectory",
    )
    user_solver_state = diffeqsolve_kwargs.pop("solver_state", None)
    if user_solver_state is not None:
        if integrals:
            raise ValueError("nderegs.solve: solver_state= cannot be combined with integrals=.")
        _, fresh = wrapped_solver.init(terms, t0, t1, y0, args)
        diffeqsolve_kwargs["solver_state"] = (user_solver_state, fresh)
    if diffeqsolve_kwargs.get("controller_state") is not None:
        raise ValueError(
            "nderegs.solve does not accept controller_state=: the NFE count needs a "
            "fresh controller state. Use diffrax.diffeqsolve to continue a solve."
        )
    local_save = None
    if save_local_state:
        saveat, local_save = _with_local_save(saveat, local_t, direction, augmented=bool(integrals))
    inner_saveat = eqx.tree_at(lambda s: (s.solver_state, s.controller_state), saveat, (True, True))
    sol = diffrax.diffeqsolve(
        terms,
        wrapped_solver,
        t0,
        t1,
        dt0,
        y0,
        args,
        saveat=inner_saveat,
        stepsize_controller=EvaluationCountingController(  # pyright: ignore[reportCallIssue]
            stepsize_controller, augmented=bool(integrals)
        ),
        adjoint=adjoint,
        max_steps=max_steps,
        **diffeqsolve_kwargs,
    )
    inner_solver_state, acc = sol.solver_state  # pyright: ignore[reportGeneralTypeIssues]
    counting_state = sol.controller_state
    assert counting_state is not None  # always saved: the NFE count is read from it
    cost = step_cost(solver, user_terms, t0, t1, user_y0, args)
    if cost is not None and drift_index is not None:
        cost = cost._replace(extra=2)  # the drift stiffness estimate, every attempt
    num_steps = jnp.asarray(sol.stats["num_steps"])
    nfe = None if cost is None else cost.total(num_steps, counting_state.first_stage_evaluations)
    backward = None
    if _integrals_refusal(integrals) is None:
        backward = backward_cost(
            adjoint, solver, cost, nfe, num_steps, counting_state.first_stage_evaluations, max_steps
        )
    if probe is not None and not counted_by_backsolve:
        # Every differentiable output of the solve, before anything is split off (the
        # local state, the integral channels), so whichever the loss uses reports once.
        counts = (jnp.nan, jnp.nan) if backward is None else backward
        ys, acc, interpolation = report_to_probe((sol.ys, acc, sol.interpolation), probe, *counts)
        sol = dataclasses.replace(sol, ys=ys, interpolation=interpolation)
    sol = dataclasses.replace(
        sol,
        solver_state=inner_solver_state if saveat.solver_state else None,
        controller_state=counting_state.inner if saveat.controller_state else None,
    )
    local_y = None
    if local_save is not None:
        sol, local_y = local_save.split(sol)
    integral_values = None
    if integrals:
        sol, integral_values = _without_integral_channels(sol, user_saveat)
    if not through_solver:
        acc = _without_solver_gradients(acc, type(adjoint).__name__)

    terms, y0 = user_terms, user_y0
    heuristics = Heuristics(
        error=acc.error,
        stiffness=acc.stiffness,
        max_stiffness=acc.max_stiffness,
        nfe=nfe,
        num_steps=num_steps,
        num_accepted_steps=jnp.asarray(sol.stats["num_accepted_steps"]),
        num_rejected_steps=jnp.asarray(sol.stats["num_rejected_steps"]),
        successful=sol.result == diffrax.RESULTS.successful,
        integrals=integral_values,
        backward_nfe=None if backward is None else backward[0],
        backward_vjps=None if backward is None else backward[1],
    )
    if local is None:
        return sol, heuristics

    local_estimates = _local_estimates(
        solver,
        terms,
        args,
        jnp.asarray(t0, time_dtype),
        jnp.asarray(t1, time_dtype),
        direction,
        acc,
        local,
        local_t,
        local_y,
        local_gradient,
        stepsize_controller,
        pair,
        drift_index,
        cost,
    )
    if probe is not None:
        # The re-taken step's own backward pass: its stages rebuilt once, one VJP each
        # (not modelled with the SDE drift stiffness's extra evaluations: NaN).
        step = jnp.nan if cost is None or cost.extra else cost.num_stages
        local_outputs = (local_estimates["local_error"], local_estimates["local_stiffness"])
        tagged = report_to_probe(local_outputs, probe, step, step)
        local_estimates.update(local_error=tagged[0], local_stiffness=tagged[1])
    heuristics = dataclasses.replace(heuristics, **local_estimates)
    return sol, heuristics


def _implicit_solve(
    probe,
    terms,
    solver,
    t0,
    t1,
    dt0,
    y0,
    args,
    controller,
    saveat,
    adjoint,
    max_steps,
    local,
    integrals,
    stiffness,
    kwargs,
) -> tuple[diffrax.Solution, Heuristics]:
    """`diffrax.ImplicitAdjoint` accepts only `SaveAt(t1=True)`, so the solver state
    that carries the estimates cannot be read back: the solve is diffeqsolve's own, and
    the heuristics hold its counts only (`error`, `stiffness`, `nfe` are None)."""
    wanted = [
        name
        for name, on in (
            ("local=", local is not None),
            ("integrals=", bool(integrals)),
            ("stiffness=True", stiffness is True),
        )
        if on
    ]
    if wanted:
        raise ValueError(
            f"nderegs.solve: {', '.join(wanted)} cannot be combined with "
            "adjoint=diffrax.ImplicitAdjoint(), which saves nothing of the solve but y(t1) "
            "(no solver state to read the estimates from). Use RecursiveCheckpointAdjoint, "
            "or solve with ImplicitAdjoint for the steady state and regularize elsewhere."
        )
    if saveat is None:
        saveat = diffrax.SaveAt(t1=True)
    sol = diffrax.diffeqsolve(
        terms,
        solver,
        t0,
        t1,
        dt0,
        y0,
        args,
        saveat=saveat,
        stepsize_controller=controller,
        adjoint=adjoint,
        max_steps=max_steps,
        **kwargs,
    )
    if probe is not None:  # not counted
        sol = dataclasses.replace(sol, ys=report_to_probe(sol.ys, probe, jnp.nan, jnp.nan))
    return sol, Heuristics(
        error=None,
        stiffness=None,
        max_stiffness=None,
        nfe=None,
        num_steps=jnp.asarray(sol.stats["num_steps"]),
        num_accepted_steps=jnp.asarray(sol.stats["num_accepted_steps"]),
        num_rejected_steps=jnp.asarray(sol.stats["num_rejected_steps"]),
        successful=sol.result == diffrax.RESULTS.successful,
    )


def _integrals_refusal(integrals) -> str | None:
    second_order = [type(i).__name__ for i in integrals if not i.uses_field_value_only]
    if second_order:
        return (
            f"cannot count the backward pass with {', '.join(second_order)}: its integrand "
            "differentiates the field, so each backward evaluation is a second-order one."
        )
    return None


def _without_solver_gradients(acc, adjoint_name: str):
    """The accumulators of an adjoint that does not differentiate through the solver:
    the sampled step is a constant, and differentiating a global estimate raises (its
    gradient would silently be zero)."""
    message = (
        f"nderegs.solve: the gradient of h.error / h.stiffness was asked for, but "
        f"adjoint={adjoint_name}() does not differentiate through the solver's steps, "
        "so that gradient would silently be zero. Use adjoint=diffrax."
        "RecursiveCheckpointAdjoint() or diffrax.DirectAdjoint(), or regularize the "
        "local estimate instead (local='unbiased' and h.local_error * h.local_weight), "
        "which works with any adjoint."
    )

    @jax.custom_vjp
    def no_gradient(x):
        return x

    def forward(x):
        return x, None

    def backward(_, cotangent):
        raise ValueError(message)

    no_gradient.defvjp(forward, backward)
    guard = lambda x: None if x is None else no_gradient(x)
    return dataclasses.replace(
        acc,
        error=guard(acc.error),
        stiffness=guard(acc.stiffness),
        max_stiffness=guard(acc.max_stiffness),
        sampled=jax.lax.stop_gradient(acc.sampled),
    )


def _time_dtype(t0, t1, dt0, saveat):
    """The dtype diffeqsolve integrates time in (as it computes it): that of t0, t1,
    dt0 and the saved times, with integers read as the default float."""
    subs = jtu.tree_leaves(saveat.subs, is_leaf=lambda s: isinstance(s, diffrax.SubSaveAt))
    timelikes = [t for t in (t0, t1, dt0, *(s.ts for s in subs)) if t is not None]
    with jax.numpy_dtype_promotion("standard"):
        dtype = jnp.result_type(*timelikes)
    if jnp.issubdtype(dtype, jnp.integer):
        return jnp.result_type(float)
    return dtype


def _check_arguments(stepsize_controller, local, local_gradient, key, integrals, stiffness) -> None:
    if not isinstance(stepsize_controller, diffrax.AbstractAdaptiveStepSizeController):
        raise TypeError(
            "nderegs.solve needs an adaptive step-size controller: the error estimate "
            "is the scaled error that controller compares with 1. Accepted: "
            "diffrax.PIDController(rtol=..., atol=...) or a "
            "diffrax.ClipStepSizeController around one; got "
            f"{type(stepsize_controller).__name__}."
        )
    if local is not None and local not in LOCAL_SAMPLINGS:
        raise ValueError(f"Unknown local={local!r}; accepted: None, 'unbiased', 'biased'.")
    if local_gradient not in LOCAL_GRADIENTS:
        raise ValueError(
            f"Unknown local_gradient={local_gradient!r}; accepted: 'step', 'trajectory'."
        )
    if local is not None and key is None:
        raise ValueError(
            f"local={local!r} samples a random step, so it needs key=jax.random.key(...)."
        )
    if any(i.needs_key for i in integrals) and key is None:
        names = [type(i).__name__ for i in integrals if i.needs_key]
        raise ValueError(
            f"{', '.join(names)} draws random noise, so it needs key=jax.random.key(...)."
        )
    if stiffness not in (None, True, False):
        raise ValueError(f"stiffness must be None, True or False; got {stiffness!r}.")


def _local_estimates(
    solver,
    terms,
    args,
    t0,
    t1,
    direction,
    acc,
    local,
    local_t,
    local_y,
    local_gradient,
    controller,
    pair,
    drift_index,
    cost,
) -> dict:
    """The `local_*` fields of the Heuristics: the sampled accepted step, re-taken."""
    sampled = acc.sampled
    if local_gradient == "step":
        sampled = jax.lax.stop_gradient(sampled)
    t_start = jax.lax.stop_gradient(sampled.t_start) * direction
    t_end = jax.lax.stop_gradient(sampled.t_end) * direction
    y_start = sampled.y_start
    if local_y is not None:
        # "trajectory", unbiased: the accepted dt of the step containing t, taken from
        # the saved (differentiable) y(t), and ending at t1 at the latest (an SDE's
        # Brownian path, and the problem, end there).
        length = jnp.minimum(jnp.abs(t_end - t_start), jnp.abs(t1 - local_t))
        # A solve stopped early (an event) never reaches t: diffrax saves inf there.
        found = jax.lax.stop_gradient(sampled.found)
        y_start = jtu.tree_map(lambda y: jnp.where(found, y, jnp.zeros_like(y)), local_y)
        t_start, t_end = local_t, local_t + direction * length
    step_estimates = _retake_step(
        solver, terms, t_start, t_end, y_start, args, controller, pair, drift_index
    )
    local_dt = jnp.abs(t_end - t_start)
    if local == "unbiased":
        safe_dt = jnp.where(local_dt > 0, local_dt, 1)
        weight = jnp.where(local_dt > 0, jnp.abs(t1 - t0) / safe_dt, 0)
    else:
        local_t = t_start
        weight = acc.num_accepted.astype(local_dt.dtype)
    found = jax.lax.stop_gradient(sampled.found)
    zero_unless_found = lambda x: None if x is None else jnp.where(found, x, 0)
    return dict(
        local_error=zero_unless_found(step_estimates.error),
        local_stiffness=zero_unless_found(step_estimates.stiffness),
        local_t=local_t,
        local_dt=local_dt,
        local_weight=jax.lax.stop_gradient(zero_unless_found(weight)),
        local_nfe=None if cost is None else cost.num_stages + cost.extra,
    )


class _LocalSave(eqx.Module):
    """Where the extra save of y(t) went, to take it out of the solution again.

    Merged into the user's `ts` where possible (a single `SubSaveAt` with the default
    `fn`: the only form `BacksolveAdjoint` accepts), else as a second `SubSaveAt`."""

    merged: bool = eqx.field(static=True)
    augmented: bool = eqx.field(static=True)
    row: Array | None = None  # merged: the row of y(t) among the sub's rows

    def split(self, sol: diffrax.Solution) -> tuple[diffrax.Solution, PyTree]:
        """(the solution the user's saveat gives, y(t))."""
        if not self.merged:
            (ys, local_ys), (ts, _) = sol.ys, sol.ts  # pyright: ignore[reportGeneralTypeIssues]
            local_y = jtu.tree_map(lambda y: y[0], local_ys)
        else:
            assert self.row is not None
            num_rows = jtu.tree_leaves(sol.ys)[0].shape[0]
            rows = jnp.arange(num_rows - 1)
            keep = rows + (rows >= self.row).astype(rows.dtype)
            local_y = jtu.tree_map(lambda y: y[self.row], sol.ys)
            ys = jtu.tree_map(lambda y: y[keep], sol.ys)
            ts = None if sol.ts is None else sol.ts[keep]
        if self.augmented:
            local_y = local_y[0]
        return dataclasses.replace(sol, ys=ys, ts=ts), local_y


def _with_local_save(saveat: diffrax.SaveAt, local_t, direction, augmented: bool):
    """`saveat` with y(local_t) saved too, and how to take it out again."""
    sub = saveat.subs
    if isinstance(sub, diffrax.SubSaveAt) and sub.fn is _save_y and not sub.steps:
        user_ts = jnp.zeros((0,), local_t.dtype) if sub.ts is None else sub.ts.astype(local_t.dtype)
        # t goes after the user's times that precede it (in the direction of
        # integration): the user's rows keep their order around it.
        position = jnp.sum(user_ts * direction <= local_t * direction)
        index = jnp.arange(user_ts.size + 1)
        ts = jnp.where(
            index < position,
            jnp.concatenate([user_ts, local_t[None]]),
            jnp.where(index == position, local_t, jnp.concatenate([local_t[None], user_ts])),
        )
        subs = diffrax.SubSaveAt(t0=sub.t0, t1=sub.t1, ts=ts, fn=sub.fn)
        local_save = _LocalSave(merged=True, augmented=augmented, row=position + int(sub.t0))
    else:
        subs = (sub, diffrax.SubSaveAt(ts=local_t[None]))
        local_save = _LocalSave(merged=False, augmented=augmented)
    saveat = diffrax.SaveAt(
        subs=subs,
        dense=saveat.dense,
        solver_state=saveat.solver_state,
        controller_state=saveat.controller_state,
        made_jump=saveat.made_jump,
    )
    return saveat, local_save


def _with_integral_channels(terms, y0, saveat, integrals, key):
    """(terms, y0, saveat) for the state (y, [I_1, ..., I_m]) with I_i(t0) = 0; the
    save always includes t1, where the integrals are read."""
    if not isinstance(terms, diffrax.ODETerm):
        raise ValueError(
            "integrals= needs the dynamics as a single diffrax.ODETerm; got "
            f"{type(terms).__name__}."
        )
    sub = saveat.subs
    if not isinstance(sub, diffrax.SubSaveAt) or sub.steps or sub.fn is not _save_y or saveat.dense:
        raise ValueError(
            "integrals= supports SaveAt(t0=..., t1=..., ts=...) with the default fn; "
            "steps=, dense=, fn= and subs= are not supported with integral channels."
        )
    keys = jax.random.split(key, len(integrals)) if key is not None else [None] * len(integrals)
    noises = tuple(i.noise(k, y0) if i.needs_key else None for i, k in zip(integrals, keys))
    field = AugmentedField(terms.vector_field, integrals, noises)
    channels = jnp.zeros(len(integrals), real_dtype(y0))
    inner_saveat = diffrax.SaveAt(t0=sub.t0, t1=True, ts=sub.ts)
    return diffrax.ODETerm(field), (y0, channels), inner_saveat


def _without_integral_channels(sol, saveat):
    """The solution as the user's saveat would give it, and the integrals at t1."""
    (ys, channels), ts = sol.ys, sol.ts
    if not saveat.subs.t1:  # the t1 row was added for the integrals
        ys = jtu.tree_map(lambda y: y[:-1], ys)
        ts = ts[:-1]
    integrals = tuple(channels[-1, i] for i in range(channels.shape[-1]))
    return dataclasses.replace(sol, ys=ys, ts=ts), integrals


def _retake_step(solver, terms, t_start, t_end, y_start, args, controller, pair, drift_index):
    """One differentiable step from a constant start state; its first stage is
    evaluated afresh (made_jump=True), so the result depends on the parameters."""
    state = solver.init(terms, t_start, t_end, y_start, args)
    y1, y_error, dense_info, _, _ = solver.step(terms, t_start, t_end, y_start, args, state, True)
    return estimate_step(
        y_start,
        y1,
        y_error,
        dense_info,
        t_start,
        t_end,
        rtol=controller.rtol,
        atol=controller.atol,
        norm=controller.norm,
        pair=pair,
        drift=drift_of(terms, drift_index, args),
    )


def _is_sde(terms) -> bool:
    leaves = jtu.tree_leaves(terms, is_leaf=lambda x: isinstance(x, diffrax.AbstractBrownianPath))
    return any(isinstance(leaf, diffrax.AbstractBrownianPath) for leaf in leaves)


def _drift_index(terms) -> int | None:
    """Index of the single ODETerm (the drift) of an SDE MultiTerm."""
    if not isinstance(terms, diffrax.MultiTerm):
        return None
    odes = [i for i, t in enumerate(terms.terms) if isinstance(t, diffrax.ODETerm)]
    return odes[0] if len(odes) == 1 else None


def _stiffness_source(solver, terms, stiffness):
    """(stage pair, drift index): where the stiffness estimate comes from.

    ODEs: the stage pair of an explicit RK tableau (free). SDEs: each RK stage mixes
    drift and diffusion and SRK steps return no stages, so the drift's stiffness is
    estimated from two extra drift evaluations per step (`drift_stiffness_estimate`);
    only when asked for (stiffness=True), never by default.
    """
    if stiffness is False:
        return None, None
    if _is_sde(terms):
        if stiffness is not True:
            return None, None
        index = _drift_index(terms)
        if index is None:
            raise ValueError(
                "The drift stiffness estimate of an SDE needs terms="
                "diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(...)) with "
                "exactly one ODETerm (the drift)."
            )
        return None, index
    pair = find_stage_pair(solver)
    if pair is None and stiffness is True:
        raise ValueError(
            f"{type(solver).__name__} has no pair of explicit Runge-Kutta stages with "
            "equal abscissa, so it carries no stiffness estimate. Solvers that do: "
            "diffrax.Tsit5, diffrax.Dopri5, diffrax.Dopri8 (or any explicit "
            "ButcherTableau with such a pair). Pass stiffness=False to skip it."
        )
    return pair, None


def _check_finite(y0):
    leaves = jtu.tree_leaves(y0)
    message = "nderegs.solve: y0 contains NaN or inf; the initial state must be finite."
    if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):  # pyright: ignore[reportAttributeAccessIssue]
        return eqx.error_if(
            y0, jnp.any(jnp.stack([~jnp.all(jnp.isfinite(x)) for x in leaves])), message
        )
    if not all(np.all(np.isfinite(np.asarray(x))) for x in leaves):
        raise ValueError(message)
    return y0
