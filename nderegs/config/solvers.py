"""The solver section: which diffrax solver and adjoint, tolerances, step-size control.

Each solver and each adjoint is a variant that builds its diffrax object; adding a
solver is one class here, listed in `_SOLVERS` (its `equations` say whether ODE or
SDE tasks can use it).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
import functools
from typing import Annotated, Any, ClassVar, Literal, Optional, TYPE_CHECKING

import diffrax
import jax
from pydantic import BeforeValidator, Field, model_validator

from ..layers import CNF, MakeNode, MakeSDE, NeuralODE, NeuralSDE, SolveOptions
from ..layers.cnf import NoiseKind, TraceEstimator
from ..regularization import SolveSetup
from .base import choice, Float, Int, Problems, tag_name, Variant

# --------------------------------------------------------------------------- #
# Adjoints
# --------------------------------------------------------------------------- #


class AbstractAdjointConfig(Variant, abc.ABC):
    name: str
    #: Whether gradients flow through the solver's internal steps, as the global
    #: error/stiffness regularizers need.
    differentiates_through_solver: ClassVar[bool]

    @abc.abstractmethod
    def build(self) -> diffrax.AbstractAdjoint: ...


class RecursiveCheckpoint(AbstractAdjointConfig):
    """`diffrax.RecursiveCheckpointAdjoint` with diffrax's default number of
    checkpoints: discretise-then-optimise."""

    name: Literal["recursive_checkpoint"] = "recursive_checkpoint"
    differentiates_through_solver = True

    def build(self) -> diffrax.AbstractAdjoint:
        return diffrax.RecursiveCheckpointAdjoint()


class Direct(AbstractAdjointConfig):
    """`diffrax.DirectAdjoint`: differentiate the bounded while loop directly."""

    name: Literal["direct"] = "direct"
    differentiates_through_solver = True

    def build(self) -> diffrax.AbstractAdjoint:
        return diffrax.DirectAdjoint()


class Backsolve(AbstractAdjointConfig):
    """`diffrax.BacksolveAdjoint`: solve the adjoint ODE backwards (O(1) memory)."""

    name: Literal["backsolve"] = "backsolve"
    differentiates_through_solver = False

    def build(self) -> diffrax.AbstractAdjoint:
        return diffrax.BacksolveAdjoint()


def tolerance_floor() -> tuple[float, str]:
    """(smallest usable tolerance, dtype name) of JAX's default float: below it an
    embedded pair's error estimate is dominated by rounding error."""
    x64 = bool(jax.config.read("jax_enable_x64"))
    return (1e-20, "float64") if x64 else (1e-11, "float32")


def _adjoint_shorthand(value: Any) -> Any:
    # `solver.adjoint=backsolve` stands for `solver.adjoint.name=backsolve`.
    return {"name": value} if isinstance(value, str) else value


if TYPE_CHECKING:
    AdjointConfig = AbstractAdjointConfig
else:
    AdjointConfig = Annotated[
        choice(RecursiveCheckpoint, Direct, Backsolve, default="recursive_checkpoint"),
        BeforeValidator(_adjoint_shorthand),
    ]


# --------------------------------------------------------------------------- #
# Solvers
# --------------------------------------------------------------------------- #


class AbstractSolverConfig(Variant, abc.ABC):
    """Settings shared by every solver: interval, tolerances (which define the error
    estimate as well as the steps), `diffrax.PIDController` coefficients, adjoint."""

    name: str

    #: The kinds of equation ("ode", "sde") the solver takes in the tasks.
    equations: ClassVar[tuple[str, ...]]

    rtol: Float = Field(default=1e-6, gt=0)
    atol: Float = Field(default=1e-6, gt=0)
    #: diffrax.PIDController coefficients (pcoeff=0, icoeff=1: the I controller).
    pcoeff: Float = Field(default=0.0, ge=0)
    icoeff: Float = Field(default=1.0, gt=0)
    t0: Float = 0.0
    t1: Float = 1.0
    max_steps: Int = Field(default=4096, gt=0)
    adjoint: AdjointConfig = Field(default_factory=RecursiveCheckpoint)
    #: Initial step size; None -> chosen by the solver.
    dt0: Optional[Float] = None

    @model_validator(mode="after")
    def _check_interval(self) -> AbstractSolverConfig:
        problems = []
        if self.t1 == self.t0:
            problems.append(("t1", self.t1, "must differ from t0"))
        elif self.dt0 is not None and (self.dt0 == 0 or (self.dt0 > 0) != (self.t1 > self.t0)):
            problems.append(
                (
                    "dt0",
                    self.dt0,
                    f"must be non-zero with the sign of t1 - t0 = {self.t1 - self.t0} "
                    "(or null: chosen by the solver)",
                )
            )
        floor, dtype = tolerance_floor()
        if max(self.rtol, self.atol) < floor:
            problems.append(
                (
                    "rtol",
                    self.rtol,
                    f"rtol = {self.rtol} and atol = {self.atol} are both below {floor:g}, "
                    f"where an error estimate in {dtype} is rounding noise (its machine "
                    f"epsilon is {float(jax.numpy.finfo(dtype).eps):.1e}) and the step "
                    "size would collapse. Raise them, or enable float64 (JAX_ENABLE_X64=1)",
                )
            )
        if problems:
            raise Problems(*problems)
        return self

    @abc.abstractmethod
    def build(self) -> diffrax.AbstractSolver: ...


class Tsit5(AbstractSolverConfig):
    """Tsitouras' 5(4) Runge–Kutta pair (stiffness estimate from stages 6 and 7)."""

    name: Literal["tsit5"] = "tsit5"
    equations = ("ode",)

    def build(self) -> diffrax.AbstractSolver:
        return diffrax.Tsit5()


class Dopri5(AbstractSolverConfig):
    """Dormand–Prince 5(4) (stiffness estimate from stages 6 and 7)."""

    name: Literal["dopri5"] = "dopri5"
    equations = ("ode",)

    def build(self) -> diffrax.AbstractSolver:
        return diffrax.Dopri5()


class Dopri8(AbstractSolverConfig):
    """Dormand–Prince 8(7)."""

    name: Literal["dopri8"] = "dopri8"
    equations = ("ode",)

    def build(self) -> diffrax.AbstractSolver:
        return diffrax.Dopri8()


class Bosh3(AbstractSolverConfig):
    """Bogacki–Shampine 3(2) (no stage pair for the stiffness estimate)."""

    name: Literal["bosh3"] = "bosh3"
    equations = ("ode",)

    def build(self) -> diffrax.AbstractSolver:
        return diffrax.Bosh3()


class Heun(AbstractSolverConfig):
    """Heun's 2(1) method; on SDEs it solves the Stratonovich form, adaptively."""

    name: Literal["heun"] = "heun"
    equations = ("ode", "sde")

    def build(self) -> diffrax.AbstractSolver:
        return diffrax.Heun()


class SPaRK(AbstractSolverConfig):
    """SPaRK: adaptive SDE solver for general (state-dependent) noise."""

    name: Literal["spark"] = "spark"
    equations = ("sde",)

    def build(self) -> diffrax.AbstractSolver:
        return diffrax.SPaRK()


_SOLVERS = (Tsit5, Dopri5, Dopri8, Bosh3, Heun, SPaRK)
if TYPE_CHECKING:
    SolverConfig = AbstractSolverConfig
else:
    SolverConfig = choice(*_SOLVERS, default="tsit5")


def solver_names(equation: str) -> tuple[str, ...]:
    """The solvers a task solving `equation` ("ode" or "sde") can use."""
    return tuple(tag_name(v) for v in _SOLVERS if equation in v.equations)


def solve_options(solver: AbstractSolverConfig, setup: SolveSetup) -> SolveOptions:
    """The layers' `SolveOptions` from the solver section and the method's solve set-up.
    Failed solves do not raise (`throw=False`): the training loop stops on them with a
    message."""
    return SolveOptions(
        t0=solver.t0,
        t1=solver.t1,
        solver=solver.build(),
        rtol=solver.rtol,
        atol=solver.atol,
        pcoeff=solver.pcoeff,
        icoeff=solver.icoeff,
        dt0=solver.dt0,
        adjoint=solver.adjoint.build(),
        max_steps=solver.max_steps,
        local=setup.local,
        local_gradient=setup.local_gradient,
        stiffness=setup.stiffness,
        throw=False,
    )


def neural_ode(solver: AbstractSolverConfig, setup: SolveSetup) -> MakeNode:
    """`make_node(vector_field)` for the models: a `NeuralODE` with the solver section's
    settings and the method's solve set-up (integrals, STEER)."""
    return functools.partial(
        NeuralODE,
        options=solve_options(solver, setup),
        integrals=setup.integrals,
        steer=setup.steer,
    )


def cnf(
    solver: AbstractSolverConfig, setup: SolveSetup, trace: TraceEstimator, noise: NoiseKind
) -> Callable[..., CNF]:
    """`make_cnf(vector_field, dim=d)`: a `CNF` with the solver section's settings, the
    method's solve set-up and the trace estimator."""
    return functools.partial(
        CNF,
        options=solve_options(solver, setup),
        integrals=setup.integrals,
        steer=setup.steer,
        trace=trace,
        noise=noise,
    )


def neural_sde(solver: AbstractSolverConfig, setup: SolveSetup, brownian_tol: float) -> MakeSDE:
    """`make_sde(drift, diffusion)` for the models: a `NeuralSDE` with the solver
    section's settings and the method's solve set-up."""
    return functools.partial(
        NeuralSDE, options=solve_options(solver, setup), brownian_tol=brownian_tol
    )
