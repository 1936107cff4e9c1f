r"""What the backward pass of a solve costs, in vector-field evaluations and VJPs.

The forward NFE (`nderegs.core.nfe`) counts the evaluations of the solve itself.
Reverse-mode differentiation pays again: it takes one VJP of the field per forward
evaluation, and it evaluates the field again (primal evaluations) to rebuild the
values those VJPs need. How often depends on the adjoint's schedule, which is fixed
by the forward solve's statistics (N attempted steps, NFE evaluations), so the
counts are known when the forward solve ends:

- `RecursiveCheckpointAdjoint(checkpoints=c)` (equinox's online treeverse,
  `c = min(⌊√(2·max_steps + 1/4) − 3/2⌋ + 1, max_steps)` by default): every step is
  VJP'd once, and the VJP of a step runs its stages twice (the step's own forward,
  then the Runge--Kutta stage loop, itself checkpointed, rebuilds each stage), so
  2·NFE primal evaluations; with N > c steps, N − c steps are also re-run from a
  checkpoint, (s − 1) evaluations each for a FSAL solver (s otherwise). That holds
  for N < (c + 1)(c + 2)/2, which the default c guarantees; beyond it (a small
  explicit `checkpoints`) the schedule repeats more and the count is NaN.
- `DirectAdjoint`: equinox's bounded while loop nests d = ⌈log₁₆ max_steps⌉ levels
  of `jax.checkpoint`ed scans; each level but the outermost re-runs the forward:
  (d − 1)·NFE primal evaluations.
- `BacksolveAdjoint`, `ForwardMode`, `ImplicitAdjoint`: not counted here (None);
  nor a Runge--Kutta solver whose stage loop is not the default checkpointed one
  (`scan_kind`), nor an SDE solve with the drift stiffness estimate (its two extra
  evaluations per step sit outside the stage loop).
  Backsolve's backward pass is a second adaptive solve whose statistics diffrax
  discards; forward mode has no backward pass.

VJPs: NFE, for both counted adjoints (every evaluation of the forward solve is
differentiated once).

A FSAL step before the first accepted one (E of them, `nderegs.core.nfe`) evaluates
its first stage too, so which steps are re-run matters. equinox's online schedule
re-runs, for r = N − c ≤ c, the steps 0, ..., r − 3 and the two steps before the
c-th, and every early step for larger r: min(max(r − 2, 0), E) re-run steps evaluate
their first stage. That is the schedule as equinox 0.13 runs it, read off a host
callback and checked in the tests (a change of schedule fails them).

These are counts as the program is written, checked in the tests against a host
callback in the vector field: XLA may merge identical primal evaluations.
"""

import math

import diffrax
import jax.numpy as jnp
from jaxtyping import Array

from .nfe import StepCost


def default_checkpoints(max_steps: int) -> int:
    """equinox's default number of checkpoints for `max_steps` steps: the smallest c
    with 2·max_steps < (c + 1)(c + 2), so the online schedule stays optimal."""
    if max_steps == 1:
        return 1
    return math.floor(-1.5 + math.sqrt(2 * max_steps + 0.25)) + 1


def _nesting_depth(max_steps: int, base: int = 16) -> int:
    depth, capacity = 0, 1
    while capacity < max_steps:
        depth, capacity = depth + 1, capacity * base
    return depth


def backward_cost(
    adjoint: diffrax.AbstractAdjoint,
    solver: diffrax.AbstractSolver,
    cost: StepCost | None,
    nfe: Array | None,
    num_steps: Array,
    first_stage_evaluations: Array,
    max_steps: int | None,
) -> tuple[Array, Array] | None:
    """`(primal evaluations, VJPs)` of the backward pass of a solve made with
    `adjoint`, or None where not counted (see the module docstring)."""
    if cost is None or nfe is None or cost.extra or max_steps is None:
        # cost.extra: the SDE drift stiffness estimate's evaluations sit outside the
        # stage loop and follow another schedule; not modelled.
        return None
    if isinstance(solver, diffrax.AbstractRungeKutta) and solver.scan_kind not in (
        None,
        "checkpointed",
    ):
        return None  # the 2·NFE of a step's VJP comes from the checkpointed stage loop
    nfe = jnp.asarray(nfe, jnp.float32)
    if isinstance(adjoint, diffrax.DirectAdjoint):
        return max(_nesting_depth(max_steps) - 1, 0) * nfe, nfe
    if not isinstance(adjoint, diffrax.RecursiveCheckpointAdjoint):
        return None
    checkpoints = adjoint.checkpoints
    if checkpoints is None:
        checkpoints = default_checkpoints(max_steps)
    checkpoints = min(checkpoints, max_steps)
    num_steps = jnp.asarray(num_steps, jnp.float32)
    rerun = jnp.maximum(num_steps - checkpoints, 0.0)
    per_step = cost.num_stages - 1 if cost.fsal else cost.num_stages
    first_stages = jnp.minimum(
        jnp.maximum(rerun - 2, 0.0), jnp.asarray(first_stage_evaluations, jnp.float32)
    )
    rerun_evaluations = rerun * per_step + (first_stages if cost.fsal else 0.0)
    if checkpoints < max_steps:
        beyond_schedule = num_steps >= (checkpoints + 1) * (checkpoints + 2) / 2
        rerun_evaluations = jnp.where(beyond_schedule, jnp.nan, rerun_evaluations)
    return 2 * nfe + rerun_evaluations, nfe
