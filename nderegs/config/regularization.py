"""The method and the regularization section: the registry of method components (each
name written once, in `COMPONENTS`) and their coefficients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Optional

import optax
from pydantic import Field

from ..regularization import (
    AbstractRegularizer,
    GlobalError,
    GlobalStiffness,
    LocalError,
    LocalStiffness,
    Regularization,
    RNODE,
    Steer,
    TayNODE,
)
from .base import ConfigError, Float, Int, Section
from .schedules import constant, Schedule


class RegularizationConfig(Section):
    """Coefficients and settings of the method components.

    A coefficient is only used when `method` contains its component. Each is a schedule
    ``{kind: constant, start: λ}`` or ``{kind: exponential, start: λ0, end: λ1}``.
    """

    #: R_E: `error`; also `local-error*` unless `local_error` is set.
    error: Schedule = Field(default_factory=constant(0.1))
    #: R_S: `stiffness`; also `local-stiffness` unless `local_stiffness` is set.
    stiffness: Schedule = Field(default_factory=constant(0.01))
    #: Coefficients of the local terms; None -> the global one (the local terms are
    #: unbiased estimates of R_E and R_S, so a coefficient means the same for both).
    local_error: Optional[Schedule] = None
    local_stiffness: Optional[Schedule] = None
    #: Sampling of the step of the local terms (`local-error-biased` is always biased).
    local_sampling: Literal["unbiased", "biased"] = "unbiased"
    #: What the local terms are differentiated through: "step" (paper 2: the sampled
    #: step from a constant start state) or "trajectory" (also the state it starts
    #: from; unbiased sampling then works with every adjoint, biased sampling needs
    #: one that differentiates through the solver).
    local_gradient: Literal["step", "trajectory"] = "step"
    #: STEER: the training end time is drawn from U(t1 - b, t1 + b).
    steer_b: Float = Field(default=0.5, ge=0)
    #: TayNODE: order K of the derivative penalized, and its coefficient.
    taynode_order: Int = Field(default=2, ge=1)
    taynode: Schedule = Field(default_factory=constant(0.01))
    #: RNODE: kinetic-energy and Jacobian-Frobenius coefficients.
    kinetic: Schedule = Field(default_factory=constant(0.01))
    jacobian: Schedule = Field(default_factory=constant(0.01))

    def sampling(self, components: frozenset[str]) -> Literal["unbiased", "biased"]:
        """The local sampling: biased with `local-error-biased`, else `local_sampling`."""
        return "biased" if "local-error-biased" in components else self.local_sampling

    def local_error_coefficient(self) -> str:
        return "local_error" if self.local_error is not None else "error"

    def local_stiffness_coefficient(self) -> str:
        return "local_stiffness" if self.local_stiffness is not None else "stiffness"

    def schedule(self, coefficient: str) -> Schedule:
        return {
            "error": self.error,
            "stiffness": self.stiffness,
            "local_error": self.local_error,
            "local_stiffness": self.local_stiffness,
            "taynode": self.taynode,
            "kinetic": self.kinetic,
            "jacobian": self.jacobian,
        }[coefficient]

    def build(self, method: str) -> Regularization:
        """The `Regularization` of `method`."""
        components = parse_method(method)
        return Regularization(
            tuple(make(self, components) for name, make in COMPONENTS.items() if name in components)
        )

    def schedules(
        self, regularization: Regularization, *, steps_per_epoch: int, epochs: int
    ) -> dict[str, optax.Schedule]:
        """Coefficient name -> λ(optimizer step), for the coefficients `regularization`
        uses."""
        names = sorted(set(regularization.coefficient_names().values()))
        return {
            name: self.schedule(name).build(steps_per_epoch=steps_per_epoch, epochs=epochs)
            for name in names
        }


#: Method components -> how each is made from the regularization section; the order
#: fixes the order of the integrals along the solve.
COMPONENTS: dict[str, Callable[[RegularizationConfig, frozenset[str]], AbstractRegularizer]] = {
    "error": lambda config, components: GlobalError(),
    "stiffness": lambda config, components: GlobalStiffness(),
    "local-error": lambda config, components: LocalError(
        name="local-error",
        sampling=config.sampling(components),
        coefficient=config.local_error_coefficient(),
        gradient=config.local_gradient,
    ),
    "local-error-biased": lambda config, components: LocalError(
        name="local-error-biased",
        sampling="biased",
        coefficient=config.local_error_coefficient(),
        gradient=config.local_gradient,
    ),
    "local-stiffness": lambda config, components: LocalStiffness(
        sampling=config.sampling(components),
        coefficient=config.local_stiffness_coefficient(),
        gradient=config.local_gradient,
    ),
    "steer": lambda config, components: Steer(b=config.steer_b),
    "taynode": lambda config, components: TayNODE(order=config.taynode_order),
    "rnode": lambda config, components: RNODE(),
}
#: Valid components of `method`.
METHOD_COMPONENTS: tuple[str, ...] = ("vanilla", *COMPONENTS)
_CONFLICTS: tuple[tuple[str, str], ...] = (
    ("error", "local-error"),
    ("error", "local-error-biased"),
    ("local-error", "local-error-biased"),
    ("stiffness", "local-stiffness"),
)


def method_problem(method: object) -> str | None:
    """Why `method` is not a valid '+'-joined set of components (None if it is)."""
    valid = ", ".join(METHOD_COMPONENTS)
    if not isinstance(method, str):
        return f"expected a string of '+'-joined components from: {valid}"
    parts = [p.strip() for p in method.split("+")]
    if any(p == "" for p in parts):
        return f"empty component; expected '+'-joined components from: {valid}"
    unknown = [p for p in parts if p not in METHOD_COMPONENTS]
    if unknown:
        names = ", ".join(f"'{u}'" for u in unknown)
        word = "component" if len(unknown) == 1 else "components"
        return f"unknown {word} {names}; valid components: {valid}"
    duplicates = sorted({p for p in parts if parts.count(p) > 1})
    if duplicates:
        return "duplicate component " + ", ".join(f"'{d}'" for d in duplicates)
    if "vanilla" in parts and len(parts) > 1:
        return "'vanilla' cannot be combined with other components"
    for a, b in _CONFLICTS:
        if a in parts and b in parts:
            return f"components '{a}' and '{b}' cannot be used together"
    return None


def parse_method(method: str) -> frozenset[str]:
    """``"error+stiffness"`` -> ``frozenset({"error", "stiffness"})``. Raises
    `ConfigError` naming the valid components."""
    problem = method_problem(method)
    if problem is not None:
        raise ConfigError(f"invalid value for 'method': {method!r} ({problem})")
    return frozenset(p.strip() for p in method.split("+"))
