"""How many vector-field evaluations a solver makes per attempted step.

An explicit Runge--Kutta step evaluates every stage, except that a FSAL ("first same
as last") method reuses the last stage of the previous accepted step as its first
stage. diffrax re-evaluates that first stage on the very first step (until one is
accepted, since a rejection rolls the solver state back) and after a jump
(`made_jump`). So, with N attempted steps of which E evaluated their first stage,

    NFE = N·(s − 1) + E    (FSAL),        NFE = N·s    (otherwise),

with s the number of stages. E is counted at run time by
`nderegs.core.counting_controller.EvaluationCountingController`, which sees every attempt.
The initial step size selection evaluates nothing in diffrax 0.7 (it is skipped
for the wrapped terms diffeqsolve builds), and `solver.init` evaluates nothing either.
"""

from typing import NamedTuple

import diffrax
from jaxtyping import PyTree


class StepCost(NamedTuple):
    """Evaluations of one attempted step: `num_stages`, one fewer if `fsal` and the
    first stage is reused, plus `extra` spent by nderegs itself (the drift stiffness
    estimate of an SDE step)."""

    num_stages: int
    fsal: bool
    extra: int = 0

    def total(self, num_steps, first_stage_evaluations):
        if self.fsal:
            return num_steps * (self.num_stages - 1 + self.extra) + first_stage_evaluations
        return num_steps * (self.num_stages + self.extra)


def step_cost(
    solver: diffrax.AbstractSolver, terms: PyTree[diffrax.AbstractTerm], t0, t1, y0, args
) -> StepCost | None:
    """The per-step cost model, counting evaluations of the (drift) vector field: for
    explicit RK solvers (ODE or SDE `MultiTerm`: a stage evaluates the drift once),
    stochastic RK solvers (SPaRK, ShARK, SRA1, ...: their drift stages, less those
    the tableau skips) and `HalfSolver` around a non-FSAL one (three steps). None where
    evaluations vary at run time (implicit solvers iterate a root finder) or the
    solver is not covered."""
    if isinstance(solver, diffrax.HalfSolver):
        inner = step_cost(solver.solver, terms, t0, t1, y0, args)
        if inner is None or inner.fsal:
            return None
        return StepCost(num_stages=3 * inner.num_stages, fsal=False)
    if isinstance(solver, diffrax.AbstractSRK):
        tableau = solver.tableau
        skipped = 0 if tableau.ignore_stage_f is None else int(sum(tableau.ignore_stage_f))
        return StepCost(num_stages=len(tableau.b_sol) - skipped, fsal=False)
    if not isinstance(solver, diffrax.AbstractERK):
        return None
    tableau = solver.tableau
    if isinstance(tableau, diffrax.MultiButcherTableau):
        fsal = all(tab.fsal for tab in tableau.tableaus)
        num_stages = tableau.tableaus[0].num_stages
    else:
        fsal = tableau.fsal
        num_stages = tableau.num_stages
    # diffrax disables FSAL when `vf_prod` is cheaper than `vf` (e.g. some control terms).
    fsal = fsal and not terms.is_vf_expensive(t0, t1, y0, args)
    return StepCost(num_stages=num_stages, fsal=bool(fsal))
