"""The pytree of solver heuristics returned by `nderegs.solve`."""

import equinox as eqx
from jaxtyping import Array, Bool, Float, Int


class Heuristics(eqx.Module):
    """What the adaptive solver knew about the solve, as differentiable quantities.

    Global estimates (sums over the accepted steps j of the solve):

    - `error`: R_E = Σ_j EEst_j·|dt_j|, EEst_j the scaled error the controller
      compared with 1, `norm(y_err / (atol + rtol·max(|y0|, |y1|)))`.
    - `stiffness`: R_S = Σ_j S_j·|dt_j|, S_j Shampine's estimate ‖Jv‖/‖v‖ from two
      stages with equal abscissa (v their difference, J = ∂f/∂y): how strongly J
      stretches one direction along the step, between J's smallest and largest singular
      values — not its dominant |eigenvalue| (for y'' = −100y, eigenvalues ±10i, S
      reaches 96.7). None when the solver has no such stage pair (or stiffness=False
      was passed).
    - `max_stiffness`: max_j S_j (the variant paper 1 uses for MNIST).

    With `adjoint=diffrax.ImplicitAdjoint()` (which saves nothing but y(t1)) the solve
    is diffeqsolve's own and `error`, `stiffness`, `max_stiffness` and `nfe` are None;
    the counts and `successful` are set.

    Gradients of the global estimates need an adjoint that differentiates through
    the solver (`RecursiveCheckpointAdjoint`, `DirectAdjoint`, `ForwardMode`); with
    any other adjoint (e.g. `BacksolveAdjoint`) their values are reported, and
    differentiating them raises a `ValueError` naming the alternatives (their
    gradient would otherwise be silently zero). Step sizes are constants in reverse
    mode (diffrax stops gradients through the controller), so these gradients are
    those of the solve on its frozen step grid and differ, by design, from finite
    differences of the adaptive solve (which also move the steps).

    `successful`: whether the solve finished (False when, with `throw=False`, it hit
    `max_steps` or the step size collapsed).

    Counts: `nfe` (vector-field evaluations of this solve, rejected steps included),
    `num_steps`, `num_accepted_steps`, `num_rejected_steps`. `nfe` is exact for every
    explicit Runge--Kutta solver (FSAL reuse counted at run time), the stochastic RK
    solvers and `HalfSolver` around a non-FSAL one, and None where the count is not
    known: implicit solvers (Kvaerno, ...) evaluate the field once per root-finder
    iteration, and diffrax's implicit step discards the root finder's iteration count
    (`optimistix.root_find`'s `stats`), so no wrapper can read it; also None with
    `ImplicitAdjoint`, and for solvers the cost model does not cover (`nderegs.core.nfe`).

    The backward pass (reverse-mode differentiation of this solve) costs
    `backward_vjps` VJPs of the vector field and `backward_nfe` primal evaluations
    (the values those VJPs need, rebuilt by the adjoint's checkpointing), known when
    the forward solve ends for `RecursiveCheckpointAdjoint` (NaN past the checkpoint
    schedule's optimal range: a small explicit `checkpoints`) and `DirectAdjoint`;
    None for other adjoints (`BacksolveAdjoint`'s backward pass is a second adaptive
    solve, counted only as it runs: see [`nderegs.BackwardCount`][]), where `nfe` is
    None, for an SDE solve with the drift stiffness estimate and with integrals that
    differentiate the field. See `nderegs.core.backward_nfe`.

    Local estimates (None unless `local=` was given): one accepted step, re-taken
    from its (constant) start state with its own step size:

    - `local_error` = EEst·|dt| and `local_stiffness` = S·|dt| of that step, exactly
      one term of R_E and R_S;
    - `local_t`: the sampled time (unbiased: t ~ U[t0, t1]; biased: the start of a
      step drawn uniformly from the accepted steps); `local_dt`: that step's |dt|;
    - `local_weight`: the constant w with E[w·local_error] = R_E, i.e.
      |t1 − t0|/local_dt (unbiased) or the number of accepted steps (biased);
    - `local_nfe`: evaluations spent re-taking the step.

    With `local_gradient="trajectory"` and unbiased sampling the step of the accepted
    size |dt| (shortened to end at t1 at the latest; `local_dt` is its length) is
    taken from (t, y(t)) instead, y(t) differentiable: then `local_error` =
    EEst(t)·`local_dt`, and E[w·local_error] = ∫ EEst(t) dt over [t0, t1], the
    continuous-time counterpart of R_E (R_E evaluates EEst at each step's start).

    `integrals`: with `integrals=(...)`, the value of each integral at the end of the
    solve, in the order given (None otherwise).

    Example:
        ```python
        sol, h = nderegs.solve(...)
        loss = task_loss + 0.1 * h.error + 0.01 * h.stiffness
        ```

    References: Pal, Ma, Shah, Rackauckas, "Opening the Blackbox: Accelerating Neural
    Differential Equations by Regularizing Internal Solver Heuristics", ICML 2021
    (global R_E, R_S); Pal, Edelman, Rackauckas, "Locally Regularized Neural
    Differential Equations: Some Black Boxes Were Meant to Remain Closed!", ICML 2023
    (local); Shampine, "Stiffness and non-stiff differential equation solvers, II",
    1977 (the stiffness estimate).
    """

    error: Float[Array, ""] | None
    stiffness: Float[Array, ""] | None
    max_stiffness: Float[Array, ""] | None
    nfe: Int[Array, ""] | None
    num_steps: Int[Array, ""]
    num_accepted_steps: Int[Array, ""]
    num_rejected_steps: Int[Array, ""]
    successful: Bool[Array, ""]
    local_error: Float[Array, ""] | None = None
    local_stiffness: Float[Array, ""] | None = None
    local_t: Float[Array, ""] | None = None
    local_dt: Float[Array, ""] | None = None
    local_weight: Float[Array, ""] | None = None
    local_nfe: int | None = None
    integrals: tuple[Float[Array, ""], ...] | None = None
    backward_nfe: Float[Array, ""] | None = None
    backward_vjps: Float[Array, ""] | None = None
