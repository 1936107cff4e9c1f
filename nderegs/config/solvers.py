"""The solver section: which diffrax solver and adjoint, tolerances, step-size control.

The solvers and the adjoints are tables (`SOLVERS`, `ADJOINTS`): adding a solver is its
name in `SolverName` and its line in `SOLVERS`.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from typing import Annotated, Any, Literal, NamedTuple, Optional

import diffrax
import equinox as eqx
import jax
from pydantic import BeforeValidator, Field, model_validator

from ..layers import NeuralSDE, SolveOptions
from ..regularization import SolveSetup
from .base import Bool, Float, Int, Problems, Variant


class SolverEntry(NamedTuple):
    """A row of `SOLVERS`: the diffrax solver a name builds."""

    solver: type[diffrax.AbstractSolver]
    #: The kinds of equation ("ode", "sde") the solver takes in the tasks.
    equations: tuple[Literal["ode", "sde"], ...]


SolverName = Literal["tsit5", "dopri5", "dopri8", "bosh3", "heun", "spark"]
#: `solver.name` -> its solver (test_config checks that every name has its row).
SOLVERS: dict[SolverName, SolverEntry] = {
    # Tsitouras' 5(4) Runge–Kutta pair (stiffness estimate from stages 6 and 7).
    "tsit5": SolverEntry(diffrax.Tsit5, ("ode",)),
    # Dormand–Prince 5(4) (stiffness estimate from stages 6 and 7).
    "dopri5": SolverEntry(diffrax.Dopri5, ("ode",)),
    # Dormand–Prince 8(7).
    "dopri8": SolverEntry(diffrax.Dopri8, ("ode",)),
    # Bogacki–Shampine 3(2) (no stage pair for the stiffness estimate).
    "bosh3": SolverEntry(diffrax.Bosh3, ("ode",)),
    # Heun's 2(1) method; on SDEs it solves the Stratonovich form, adaptively.
    "heun": SolverEntry(diffrax.Heun, ("ode", "sde")),
    # SPaRK: adaptive SDE solver for general (state-dependent) noise.
    "spark": SolverEntry(diffrax.SPaRK, ("sde",)),
}


class AdjointEntry(NamedTuple):
    """A row of `ADJOINTS`: the diffrax adjoint a name builds."""

    adjoint: type[diffrax.AbstractAdjoint]
    #: Whether gradients flow through the solver's internal steps, as the global
    #: error/stiffness regularizers need.
    differentiates_through_solver: bool


AdjointName = Literal["recursive_checkpoint", "direct", "backsolve"]
#: `solver.adjoint.name` -> its adjoint.
ADJOINTS: dict[AdjointName, AdjointEntry] = {
    # Discretise-then-optimise, with diffrax's default number of checkpoints.
    "recursive_checkpoint": AdjointEntry(diffrax.RecursiveCheckpointAdjoint, True),
    # Differentiate the bounded while loop directly.
    "direct": AdjointEntry(diffrax.DirectAdjoint, True),
    # Solve the adjoint ODE backwards (O(1) memory).
    "backsolve": AdjointEntry(diffrax.BacksolveAdjoint, False),
}


class AdjointConfig(Variant):
    """How the solve is differentiated: a diffrax adjoint of `ADJOINTS`."""

    name: AdjointName = "recursive_checkpoint"
    #: backsolve only: the adjoint solve's step-size controller measures its error by
    #: `diffrax.adjoint_rms_seminorm` (the state and the adjoint state, not the
    #: parameters' cotangents), which takes fewer backward steps (Kidger et al. 2021,
    #: "Hey, that's not an ODE").
    seminorm: Bool = False

    @model_validator(mode="after")
    def _check_seminorm(self) -> AdjointConfig:
        if self.seminorm and self.name != "backsolve":
            reason = "applies to name=backsolve only (the adjoint that solves)"
            raise Problems(("seminorm", True, reason))
        return self

    @property
    def differentiates_through_solver(self) -> bool:
        return ADJOINTS[self.name].differentiates_through_solver

    def build(self, controller: diffrax.PIDController) -> diffrax.AbstractAdjoint:
        """The adjoint; with `seminorm`, its backward solve is controlled as the forward
        one (`controller`'s tolerances and coefficients) under the adjoint seminorm."""
        if self.seminorm:
            seminorm_controller = eqx.tree_at(
                lambda c: c.norm, controller, diffrax.adjoint_rms_seminorm
            )
            return diffrax.BacksolveAdjoint(stepsize_controller=seminorm_controller)
        return ADJOINTS[self.name].adjoint()


def _adjoint_shorthand(value: Any) -> Any:
    # `adjoint: backsolve` in a file stands for `adjoint: {name: backsolve}`.
    return {"name": value} if isinstance(value, str) else value


class SolverConfig(Variant):
    """A diffrax solver of `SOLVERS`, its interval, tolerances (which define the error
    estimate as well as the steps), `diffrax.PIDController` coefficients and adjoint."""

    name: SolverName = "tsit5"
    rtol: Float = Field(default=1e-6, gt=0)
    atol: Float = Field(default=1e-6, gt=0)
    #: diffrax.PIDController coefficients (pcoeff=0, icoeff=1: the I controller).
    pcoeff: Float = Field(default=0.0, ge=0)
    icoeff: Float = Field(default=1.0, gt=0)
    t0: Float = 0.0
    t1: Float = 1.0
    max_steps: Int = Field(default=4096, gt=0)
    adjoint: Annotated[AdjointConfig, BeforeValidator(_adjoint_shorthand)] = Field(
        default_factory=AdjointConfig
    )
    #: Initial step size; None -> chosen by the solver.
    dt0: Optional[Float] = None

    @model_validator(mode="after")
    def _check_interval(self) -> SolverConfig:
        problems = []
        if self.t1 == self.t0:
            problems.append(("t1", self.t1, "must differ from t0"))
        elif self.dt0 is not None and (self.dt0 == 0 or (self.dt0 > 0) != (self.t1 > self.t0)):
            reason = (
                f"must be non-zero with the sign of t1 - t0 = {self.t1 - self.t0} (or null: "
                "chosen by the solver)"
            )
            problems.append(("dt0", self.dt0, reason))
        # Below the floor, an embedded pair's error estimate is rounding error.
        x64 = jax.config.read("jax_enable_x64")
        floor, dtype = (1e-20, "float64") if x64 else (1e-11, "float32")
        if max(self.rtol, self.atol) < floor:
            reason = (
                f"rtol = {self.rtol} and atol = {self.atol} are both below {floor:g}, where an "
                f"error estimate in {dtype} is rounding noise (its machine epsilon is "
                f"{float(jax.numpy.finfo(dtype).eps):.1e}) and the step size would collapse. "
                "Raise them, or enable float64 (JAX_ENABLE_X64=1)"
            )
            problems.append(("rtol", self.rtol, reason))
        if problems:
            raise Problems(*problems)
        return self

    def build(self) -> diffrax.AbstractSolver:
        return SOLVERS[self.name].solver()

    def options(self, setup: SolveSetup) -> SolveOptions:
        """The layers' `SolveOptions`: this section's settings and the method's solve
        set-up. Failed solves do not raise (`throw=False`): the training loop stops on
        them with a message."""
        options = SolveOptions(
            **self.model_dump(exclude={"name", "adjoint"}),
            solver=self.build(),
            local=setup.local,
            local_gradient=setup.local_gradient,
            stiffness=setup.stiffness,
            throw=False,
        )
        adjoint = self.adjoint.build(options.stepsize_controller())
        return dataclasses.replace(options, adjoint=adjoint)


def solver_names(equation: str) -> tuple[str, ...]:
    """The solvers a task solving `equation` ("ode" or "sde") can use."""
    return tuple(name for name, entry in SOLVERS.items() if equation in entry.equations)


def layer(cls: Callable[..., Any], solver: SolverConfig, setup: SolveSetup, **settings: Any) -> Any:
    """The models' `make_node`/`make_cnf`/`make_sde`: the layer `cls` (`NeuralODE`,
    `CNF`, `NeuralSDE`) with the solver section's settings, the method's solve set-up
    (its integrals and STEER on an ODE) and the layer's own `settings`."""
    if cls is not NeuralSDE:
        settings.update(integrals=setup.integrals, steer=setup.steer)
    return eqx.Partial(cls, options=solver.options(setup), **settings)
