"""The components of a method: each says how the solve must be set up for it and which
terms it adds to the loss, with the coefficient that weighs each term.

Components (joined with '+' in a method): the solver heuristics `error`, `stiffness`
(global, Pal et al. 2021), `local-error`, `local-error-biased`, `local-stiffness`
(local, Pal et al. 2023), and the baselines `steer` (Ghosh et al. 2020), `taynode`
(Kelly et al. 2020) and `rnode` (Finlay et al. 2020).
"""

import abc
from collections.abc import Mapping
import dataclasses
from typing import ClassVar, Literal

import equinox as eqx
from jaxtyping import Array

from ..core import AbstractIntegral, Heuristics, JacobianFrobenius, KineticEnergy, TaylorDerivative
from .coefficients import AbstractCoefficient, Constant


class SolveSetup(eqx.Module):
    """How the solve must be set up for a method: `local` sampling (None | "unbiased" |
    "biased") and what its gradient flows through (`local_gradient`: "step" |
    "trajectory", see `nderegs.solve`), the `stiffness` estimate (None: when the solver has one; True: required),
    `integrals` carried along the solve (named in `integral_names`), and STEER's
    half-width `steer` (0: off)."""

    local: Literal["unbiased", "biased"] | None = None
    local_gradient: Literal["step", "trajectory"] = "step"
    stiffness: bool | None = None
    integrals: tuple[AbstractIntegral, ...] = ()
    integral_names: tuple[str, ...] = ()
    steer: float = 0.0


def as_coefficient(value: "AbstractCoefficient | float") -> AbstractCoefficient:
    """A coefficient object, or a number as a `Constant`."""
    if isinstance(value, AbstractCoefficient):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"A coefficient is a number or an nderegs coefficient (Constant, Scheduled, "
            f"Shared, NFEBudget, LossBudget); got {value!r}."
        )
    return Constant(float(value))


def _coefficient_field():
    return eqx.field(converter=as_coefficient)


class AbstractRegularizer(eqx.Module):
    """One component of a method.

    `name` is the component in method strings (``"error"``), written only in its class
    (configs and tasks take it from there); `configure` adds what the component needs
    to the solve set-up; `terms` reads its loss terms off the solve's
    heuristics (and the per-sample integrals by name); `coefficients` gives the
    coefficient that weighs each term. What a component needs is declared, so configs
    and tasks check it without knowing components by name: `regularizes` (two
    components that regularize the same quantity conflict), `ode_only` (why an SDE
    cannot train with it) and `solver_gradients` (why it needs an adjoint that
    differentiates through the solver).
    """

    #: The component's name in method strings.
    name: eqx.AbstractClassVar[str]
    #: Each coefficient argument of the constructor -> the names of the settings that
    #: may give it, in order of preference (the first one set gives it). A configuration
    #: of the method (nderegs.config's `regularization` section) sets the coefficients
    #: under these names.
    coefficient_keys: eqx.AbstractClassVar[dict[str, tuple[str, ...]]]
    #: The quantity regularized ("error", "stiffness", ...): a method may hold one
    #: component per quantity. None: conflicts with nothing.
    regularizes: eqx.AbstractClassVar[str | None]
    #: Why an SDE cannot train with it (None: it can).
    ode_only: eqx.AbstractClassVar[str | None]

    @abc.abstractmethod
    def configure(self, setup: SolveSetup) -> SolveSetup:
        """`setup` with what this component needs."""

    @abc.abstractmethod
    def terms(self, h: Heuristics, integrals: Mapping[str, Array]) -> dict[str, Array]:
        """Term name -> value for one solve."""

    @abc.abstractmethod
    def coefficients(self) -> dict[str, AbstractCoefficient]:
        """Term name -> the coefficient that weighs it."""

    @abc.abstractmethod
    def solver_gradients(self) -> str | None:
        """Why this component needs gradients through the solver's steps (None: any
        adjoint will do)."""


class GlobalError(AbstractRegularizer):
    r"""R_E = Σ_accepted EEst_j·|dt_j| (Pal et al. 2021), through the solver's steps,
    weighed by `coefficient` (a number or a coefficient object)."""

    coefficient: AbstractCoefficient = _coefficient_field()
    name: ClassVar[str] = "error"
    coefficient_keys: ClassVar[dict[str, tuple[str, ...]]] = {"coefficient": ("error",)}
    regularizes: ClassVar[str] = "error"
    ode_only: ClassVar[None] = None

    def configure(self, setup: SolveSetup) -> SolveSetup:
        return setup

    def terms(self, h: Heuristics, integrals: Mapping[str, Array]) -> dict[str, Array]:
        if h.error is None:
            raise ValueError(
                "The error regularizer needs h.error, which a solve with "
                "adjoint=diffrax.ImplicitAdjoint() does not give."
            )
        return {self.name: h.error}

    def coefficients(self) -> dict[str, AbstractCoefficient]:
        return {self.name: self.coefficient}

    def solver_gradients(self) -> str | None:
        return "R_E sums every step of the solve and is differentiated through them"


class GlobalStiffness(AbstractRegularizer):
    r"""R_S = Σ_accepted S_j·|dt_j|, S_j Shampine's stiffness estimate (Pal et al. 2021)."""

    coefficient: AbstractCoefficient = _coefficient_field()
    name: ClassVar[str] = "stiffness"
    coefficient_keys: ClassVar[dict[str, tuple[str, ...]]] = {"coefficient": ("stiffness",)}
    regularizes: ClassVar[str] = "stiffness"
    ode_only: ClassVar[None] = None

    def configure(self, setup: SolveSetup) -> SolveSetup:
        return dataclasses.replace(setup, stiffness=True)

    def terms(self, h: Heuristics, integrals: Mapping[str, Array]) -> dict[str, Array]:
        assert h.stiffness is not None  # the solve was set up with stiffness=True
        return {self.name: h.stiffness}

    def coefficients(self) -> dict[str, AbstractCoefficient]:
        return {self.name: self.coefficient}

    def solver_gradients(self) -> str | None:
        return "R_S sums every step of the solve and is differentiated through them"


def _local_solver_gradients(
    sampling: Literal["unbiased", "biased"], gradient: Literal["step", "trajectory"]
) -> str | None:
    if sampling == "biased" and gradient == "trajectory":
        return (
            "with biased sampling the sampled step's start state is known only after the "
            "solve, so its gradient (local_gradient=trajectory) must come through the solver"
        )
    return None


class AbstractLocalError(AbstractRegularizer):
    r"""w·EEst·|dt| of one sampled accepted step, an unbiased estimate of R_E
    (Pal et al. 2023); `sampling` "unbiased" (t ~ U[t0, t1]) or "biased" (a step
    index drawn uniformly); `gradient` "step" (paper 2: the step from a constant
    start state) or "trajectory" (through the state the step starts from too).
    Two components, one per class: `LocalError` and `BiasedLocalError`.

    Its coefficient is set by `local_error`, or else by R_E's (the local term estimates
    R_E, so a coefficient means the same for both)."""

    sampling: eqx.AbstractVar[Literal["unbiased", "biased"]]
    coefficient: eqx.AbstractVar[AbstractCoefficient]
    gradient: eqx.AbstractVar[Literal["step", "trajectory"]]
    coefficient_keys: ClassVar[dict[str, tuple[str, ...]]] = {
        "coefficient": ("local_error", *GlobalError.coefficient_keys["coefficient"])
    }
    regularizes: ClassVar[str] = GlobalError.regularizes
    ode_only: ClassVar[None] = None

    def configure(self, setup: SolveSetup) -> SolveSetup:
        return dataclasses.replace(setup, local=self.sampling, local_gradient=self.gradient)

    def terms(self, h: Heuristics, integrals: Mapping[str, Array]) -> dict[str, Array]:
        assert h.local_error is not None and h.local_weight is not None  # local=... was set
        return {self.name: h.local_error * h.local_weight}

    def coefficients(self) -> dict[str, AbstractCoefficient]:
        return {self.name: self.coefficient}

    def solver_gradients(self) -> str | None:
        return _local_solver_gradients(self.sampling, self.gradient)


class LocalError(AbstractLocalError):
    """The local error term (see `AbstractLocalError`), its step sampled as `sampling`
    says."""

    sampling: Literal["unbiased", "biased"]
    coefficient: AbstractCoefficient = _coefficient_field()
    gradient: Literal["step", "trajectory"] = "step"
    name: ClassVar[str] = "local-error"


class BiasedLocalError(AbstractLocalError):
    """The local error term (see `AbstractLocalError`), its step always sampled biased
    (a step index drawn uniformly)."""

    coefficient: AbstractCoefficient = _coefficient_field()
    gradient: Literal["step", "trajectory"] = "step"
    sampling: ClassVar[Literal["biased"]] = "biased"
    name: ClassVar[str] = "local-error-biased"


class LocalStiffness(AbstractRegularizer):
    r"""w·S·|dt| of one sampled accepted step, an unbiased estimate of R_S; its
    coefficient is set by `local_stiffness`, or else by R_S's."""

    sampling: Literal["unbiased", "biased"]
    coefficient: AbstractCoefficient = _coefficient_field()
    gradient: Literal["step", "trajectory"] = "step"
    name: ClassVar[str] = "local-stiffness"
    coefficient_keys: ClassVar[dict[str, tuple[str, ...]]] = {
        "coefficient": ("local_stiffness", *GlobalStiffness.coefficient_keys["coefficient"])
    }
    regularizes: ClassVar[str] = GlobalStiffness.regularizes
    ode_only: ClassVar[None] = None

    def configure(self, setup: SolveSetup) -> SolveSetup:
        return dataclasses.replace(
            setup, local=self.sampling, local_gradient=self.gradient, stiffness=True
        )

    def terms(self, h: Heuristics, integrals: Mapping[str, Array]) -> dict[str, Array]:
        assert h.local_stiffness is not None and h.local_weight is not None
        return {self.name: h.local_stiffness * h.local_weight}

    def coefficients(self) -> dict[str, AbstractCoefficient]:
        return {self.name: self.coefficient}

    def solver_gradients(self) -> str | None:
        return _local_solver_gradients(self.sampling, self.gradient)


class Steer(AbstractRegularizer):
    """STEER (Ghosh et al. 2020): the training end time is drawn from U(t1 − b, t1 + b).
    Adds no loss term."""

    b: float
    name: ClassVar[str] = "steer"
    coefficient_keys: ClassVar[dict[str, tuple[str, ...]]] = {}
    regularizes: ClassVar[str] = "end-time"
    ode_only: ClassVar[str] = "changes the end time of an ODE solve (ODE tasks only)"

    def configure(self, setup: SolveSetup) -> SolveSetup:
        return dataclasses.replace(setup, steer=self.b)

    def terms(self, h: Heuristics, integrals: Mapping[str, Array]) -> dict[str, Array]:
        return {}

    def coefficients(self) -> dict[str, AbstractCoefficient]:
        return {}

    def solver_gradients(self) -> str | None:
        return None


class TayNODE(AbstractRegularizer):
    r"""TayNODE's R_K = ∫ ‖d^K z/dt^K‖² dt (Kelly et al. 2020), by Taylor-mode AD."""

    coefficient: AbstractCoefficient = _coefficient_field()
    order: int = 2
    name: ClassVar[str] = "taynode"
    coefficient_keys: ClassVar[dict[str, tuple[str, ...]]] = {"coefficient": ("taynode",)}
    regularizes: ClassVar[str] = "taylor-derivative"
    ode_only: ClassVar[str] = "integrates along an ODE solve (ODE tasks only)"

    def configure(self, setup: SolveSetup) -> SolveSetup:
        return _with_integrals(setup, (self.name, TaylorDerivative(order=self.order)))

    def terms(self, h: Heuristics, integrals: Mapping[str, Array]) -> dict[str, Array]:
        return {self.name: integrals[self.name]}

    def coefficients(self) -> dict[str, AbstractCoefficient]:
        return {self.name: self.coefficient}

    def solver_gradients(self) -> str | None:
        return None


class RNODE(AbstractRegularizer):
    r"""RNODE (Finlay et al. 2020): kinetic energy ∫ ‖f‖² dt and the Jacobian's
    Frobenius norm ∫ ‖∂f/∂z‖²_F dt (Hutchinson), each with its own coefficient."""

    kinetic: AbstractCoefficient = _coefficient_field()
    jacobian: AbstractCoefficient = _coefficient_field()
    name: ClassVar[str] = "rnode"
    coefficient_keys: ClassVar[dict[str, tuple[str, ...]]] = {
        "kinetic": ("kinetic",),
        "jacobian": ("jacobian",),
    }
    regularizes: ClassVar[str] = "kinetic-energy"
    ode_only: ClassVar[str] = "integrates along an ODE solve (ODE tasks only)"

    def configure(self, setup: SolveSetup) -> SolveSetup:
        return _with_integrals(
            setup, ("rnode-kinetic", KineticEnergy()), ("rnode-jacobian", JacobianFrobenius())
        )

    def terms(self, h: Heuristics, integrals: Mapping[str, Array]) -> dict[str, Array]:
        return {name: integrals[name] for name in ("rnode-kinetic", "rnode-jacobian")}

    def coefficients(self) -> dict[str, AbstractCoefficient]:
        return {"rnode-kinetic": self.kinetic, "rnode-jacobian": self.jacobian}

    def solver_gradients(self) -> str | None:
        return None


def _with_integrals(setup: SolveSetup, *named: tuple[str, AbstractIntegral]) -> SolveSetup:
    return dataclasses.replace(
        setup,
        integrals=setup.integrals + tuple(i for _, i in named),
        integral_names=setup.integral_names + tuple(n for n, _ in named),
    )
