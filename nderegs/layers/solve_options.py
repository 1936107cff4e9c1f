"""`SolveOptions`: how a layer solves its equation, held by every layer and built by the
config, declared once."""

import dataclasses
from typing import Any, Literal

import diffrax
import equinox as eqx


class SolveOptions(eqx.Module):
    """The settings of one layer's solve by [`nderegs.solve`][]: the interval, the
    solver, the step-size controller, the adjoint and what the solve estimates.

    The tolerances define the error estimate EEst (what the error regularizer sums) as
    well as the steps: both come from one `diffrax.PIDController(rtol, atol, pcoeff,
    icoeff)` (default: the I controller). `dt0=None` lets the solver choose the first
    step. `local` ("unbiased" | "biased") samples one step for local regularization and
    then needs `key=` at call time; `local_gradient` ("step" | "trajectory") says what
    that step's estimate is differentiated through; `stiffness` (None: when the solver
    has one; True: required; False: off) is passed to `nderegs.solve`. `throw=False`
    returns a failed solve (see `Heuristics.successful`) instead of raising, which
    training loops use to stop cleanly.

    A layer takes these settings as keywords (`NeuralODE(field, rtol=1e-8)`) or as one
    object (`NeuralODE(field, options=SolveOptions(rtol=1e-8))`, keywords then replace
    its fields), so a configuration builds one `SolveOptions` for all its layers.
    """

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
    local: Literal["unbiased", "biased"] | None = eqx.field(static=True, default=None)
    local_gradient: Literal["step", "trajectory"] = eqx.field(static=True, default="step")
    stiffness: bool | None = eqx.field(static=True, default=None)
    throw: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        problems = []
        if self.t0 == self.t1:
            problems.append(f"t0 != t1 (got t0 = t1 = {self.t0})")
        if not (self.rtol > 0 and self.atol > 0):
            problems.append(f"rtol > 0 and atol > 0 (got rtol={self.rtol}, atol={self.atol})")
        if not (self.pcoeff >= 0 and self.icoeff > 0):
            problems.append(
                f"pcoeff >= 0 and icoeff > 0 (got pcoeff={self.pcoeff}, icoeff={self.icoeff})"
            )
        if problems:
            raise ValueError("SolveOptions needs " + "; ".join(problems) + ".")

    @classmethod
    def of(
        cls, options: "SolveOptions | None", defaults: dict[str, Any], settings: dict[str, Any]
    ) -> "SolveOptions":
        """`options` (or a layer's `defaults`) with the keyword `settings` a layer was
        given replacing its fields; a keyword that is no setting is a `TypeError` naming
        the settings."""
        unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            names = ", ".join(f.name for f in dataclasses.fields(cls))
            raise TypeError(
                f"unexpected keyword argument(s) {', '.join(unknown)}; the solve settings a "
                f"layer takes are: {names}"
            )
        if options is None:
            return cls(**{**defaults, **settings})
        return dataclasses.replace(options, **settings)

    def stepsize_controller(self) -> diffrax.PIDController:
        """The controller of the solve (and of the error estimate)."""
        return diffrax.PIDController(
            rtol=self.rtol, atol=self.atol, pcoeff=self.pcoeff, icoeff=self.icoeff
        )

    def solve_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `nderegs.solve` that these settings fix (the
        interval, solver and `dt0` are positional there)."""
        return dict(
            stepsize_controller=self.stepsize_controller(),
            adjoint=self.adjoint,
            max_steps=self.max_steps,
            local=self.local,
            local_gradient=self.local_gradient,
            stiffness=self.stiffness,
            throw=self.throw,
        )

    def for_evaluation(self) -> "SolveOptions":
        """No local sampling and no stiffness estimate: the solve of a test batch."""
        return dataclasses.replace(self, local=None, stiffness=False)
