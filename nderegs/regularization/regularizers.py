"""The components of a method: each says how the solve must be set up for it and which
terms it adds to the loss, with the name of the coefficient that weighs each term.

Components (joined with '+' in a method): the solver heuristics `error`, `stiffness`
(global, Pal et al. 2021), `local-error`, `local-error-biased`, `local-stiffness`
(local, Pal et al. 2023), and the baselines `steer` (Ghosh et al. 2020), `taynode`
(Kelly et al. 2020) and `rnode` (Finlay et al. 2020).
"""

import abc
from collections.abc import Mapping
import dataclasses
from typing import Literal

import equinox as eqx
from jaxtyping import Array

from ..core import AbstractIntegral, Heuristics, JacobianFrobenius, KineticEnergy, TaylorDerivative


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


class AbstractRegularizer(eqx.Module):
    """One component of a method.

    `name` is the component in method strings (``"error"``); `configure` adds what the
    component needs to the solve set-up; `terms` reads its loss terms off the solve's
    heuristics (and the per-sample integrals by name); `coefficients` names the
    coefficient that weighs each term.
    """

    name: eqx.AbstractVar[str]

    @abc.abstractmethod
    def configure(self, setup: SolveSetup) -> SolveSetup:
        """`setup` with what this component needs."""

    @abc.abstractmethod
    def terms(self, h: Heuristics, integrals: Mapping[str, Array]) -> dict[str, Array]:
        """Term name -> value for one solve."""

    @abc.abstractmethod
    def coefficients(self) -> dict[str, str]:
        """Term name -> the name of its coefficient."""


class GlobalError(AbstractRegularizer):
    r"""R_E = Σ_accepted EEst_j·|dt_j| (Pal et al. 2021), through the solver's steps."""

    coefficient: str = "error"
    name: Literal["error"] = "error"

    def configure(self, setup: SolveSetup) -> SolveSetup:
        return setup

    def terms(self, h: Heuristics, integrals: Mapping[str, Array]) -> dict[str, Array]:
        if h.error is None:
            raise ValueError(
                "The error regularizer needs h.error, which a solve with "
                "adjoint=diffrax.ImplicitAdjoint() does not give."
            )
        return {self.name: h.error}

    def coefficients(self) -> dict[str, str]:
        return {self.name: self.coefficient}


class GlobalStiffness(AbstractRegularizer):
    r"""R_S = Σ_accepted S_j·|dt_j|, S_j Shampine's stiffness estimate (Pal et al. 2021)."""

    coefficient: str = "stiffness"
    name: Literal["stiffness"] = "stiffness"

    def configure(self, setup: SolveSetup) -> SolveSetup:
        return dataclasses.replace(setup, stiffness=True)

    def terms(self, h: Heuristics, integrals: Mapping[str, Array]) -> dict[str, Array]:
        assert h.stiffness is not None  # the solve was set up with stiffness=True
        return {self.name: h.stiffness}

    def coefficients(self) -> dict[str, str]:
        return {self.name: self.coefficient}


class LocalError(AbstractRegularizer):
    r"""w·EEst·|dt| of one sampled accepted step, an unbiased estimate of R_E
    (Pal et al. 2023); `sampling` "unbiased" (t ~ U[t0, t1]) or "biased" (a step
    index drawn uniformly); `gradient` "step" (paper 2: the step from a constant
    start state) or "trajectory" (through the state the step starts from too)."""

    name: str
    sampling: Literal["unbiased", "biased"]
    coefficient: str
    gradient: Literal["step", "trajectory"] = "step"

    def configure(self, setup: SolveSetup) -> SolveSetup:
        return dataclasses.replace(setup, local=self.sampling, local_gradient=self.gradient)

    def terms(self, h: Heuristics, integrals: Mapping[str, Array]) -> dict[str, Array]:
        assert h.local_error is not None and h.local_weight is not None  # local=... was set
        return {self.name: h.local_error * h.local_weight}

    def coefficients(self) -> dict[str, str]:
        return {self.name: self.coefficient}


class LocalStiffness(AbstractRegularizer):
    r"""w·S·|dt| of one sampled accepted step, an unbiased estimate of R_S."""

    sampling: Literal["unbiased", "biased"]
    coefficient: str
    gradient: Literal["step", "trajectory"] = "step"
    name: Literal["local-stiffness"] = "local-stiffness"

    def configure(self, setup: SolveSetup) -> SolveSetup:
        return dataclasses.replace(
            setup, local=self.sampling, local_gradient=self.gradient, stiffness=True
        )

    def terms(self, h: Heuristics, integrals: Mapping[str, Array]) -> dict[str, Array]:
        assert h.local_stiffness is not None and h.local_weight is not None
        return {self.name: h.local_stiffness * h.local_weight}

    def coefficients(self) -> dict[str, str]:
        return {self.name: self.coefficient}


class Steer(AbstractRegularizer):
    """STEER (Ghosh et al. 2020): the training end time is drawn from U(t1 − b, t1 + b).
    Adds no loss term."""

    b: float
    name: Literal["steer"] = "steer"

    def configure(self, setup: SolveSetup) -> SolveSetup:
        return dataclasses.replace(setup, steer=self.b)

    def terms(self, h: Heuristics, integrals: Mapping[str, Array]) -> dict[str, Array]:
        return {}

    def coefficients(self) -> dict[str, str]:
        return {}


class TayNODE(AbstractRegularizer):
    r"""TayNODE's R_K = ∫ ‖d^K z/dt^K‖² dt (Kelly et al. 2020), by Taylor-mode AD."""

    order: int = 2
    coefficient: str = "taynode"
    name: Literal["taynode"] = "taynode"

    def configure(self, setup: SolveSetup) -> SolveSetup:
        return _with_integrals(setup, (self.name, TaylorDerivative(order=self.order)))

    def terms(self, h: Heuristics, integrals: Mapping[str, Array]) -> dict[str, Array]:
        return {self.name: integrals[self.name]}

    def coefficients(self) -> dict[str, str]:
        return {self.name: self.coefficient}


class RNODE(AbstractRegularizer):
    r"""RNODE (Finlay et al. 2020): kinetic energy ∫ ‖f‖² dt and the Jacobian's
    Frobenius norm ∫ ‖∂f/∂z‖²_F dt (Hutchinson), each with its own coefficient."""

    kinetic_coefficient: str = "kinetic"
    jacobian_coefficient: str = "jacobian"
    name: Literal["rnode"] = "rnode"

    def configure(self, setup: SolveSetup) -> SolveSetup:
        return _with_integrals(
            setup, ("rnode-kinetic", KineticEnergy()), ("rnode-jacobian", JacobianFrobenius())
        )

    def terms(self, h: Heuristics, integrals: Mapping[str, Array]) -> dict[str, Array]:
        return {name: integrals[name] for name in ("rnode-kinetic", "rnode-jacobian")}

    def coefficients(self) -> dict[str, str]:
        return {
            "rnode-kinetic": self.kinetic_coefficient,
            "rnode-jacobian": self.jacobian_coefficient,
        }


def _with_integrals(setup: SolveSetup, *named: tuple[str, AbstractIntegral]) -> SolveSetup:
    return dataclasses.replace(
        setup,
        integrals=setup.integrals + tuple(i for _, i in named),
        integral_names=setup.integral_names + tuple(n for n, _ in named),
    )
