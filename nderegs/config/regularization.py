"""The method and the regularization section: the registry of method components (their
classes, in `COMPONENTS`; each name is written once, in its class) and the settings they
read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Optional

from pydantic import Field

from ..regularization import (
    AbstractCoefficient,
    AbstractRegularizer,
    BiasedLocalError,
    GlobalError,
    GlobalStiffness,
    LocalError,
    LocalStiffness,
    Regularization,
    RNODE,
    Steer,
    TayNODE,
    VANILLA,
)
from .base import ConfigError, Float, Int, Problems, Section
from .coefficients import Coefficient, constant, LossBudgetCoefficient, SharedCoefficient


class RegularizationConfig(Section):
    """Coefficients and settings of the method components.

    A coefficient is only used when `method` contains its component. Each is
    ``{kind: constant, start: λ}``, ``{kind: exponential, start: λ0, end: λ1}``, a budget
    that sets λ during training, ``{kind: nfe_budget, target: N}`` or ``{kind:
    loss_budget, tolerance: t}``, or ``{kind: shared, of: TERM, ratio: r}`` (r × the
    coefficient of another term of the method).
    """

    #: R_E: `error`; also `local-error*` unless `local_error` is set.
    error: Coefficient = Field(default_factory=constant(0.1))
    #: R_S: `stiffness`; also `local-stiffness` unless `local_stiffness` is set.
    stiffness: Coefficient = Field(default_factory=constant(0.01))
    #: Coefficients of the local terms; None -> the global one (the local terms are
    #: unbiased estimates of R_E and R_S, so a coefficient means the same for both).
    local_error: Optional[Coefficient] = None
    local_stiffness: Optional[Coefficient] = None
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
    taynode: Coefficient = Field(default_factory=constant(0.01))
    #: RNODE: kinetic-energy and Jacobian-Frobenius coefficients.
    kinetic: Coefficient = Field(default_factory=constant(0.01))
    jacobian: Coefficient = Field(default_factory=constant(0.01))

    def build_reading(
        self, method: str, *, epochs: int, references: ReferenceReader | None = None
    ) -> tuple[Regularization, dict[str, str]]:
        """The `Regularization` of `method`, its coefficients built for a run of
        `epochs` epochs, and for each of its terms the key of this section its
        coefficient was built from. `references(key, budget)` gives a loss budget's
        reference as the budget compares it (a run directory's trajectory read, a
        metric's sign applied); without it, a run directory stands as a placeholder:
        the method's structure is right, the budget's reference is not. Raises
        `Problems` naming the key of a coefficient that cannot be built."""
        components = parse_method(method)
        regularizers, by_term = [], {}
        for component, settings in COMPONENTS.items():
            if component.name in components:
                read = {
                    argument: self._coefficient(keys, epochs, references)
                    for argument, keys in component.coefficient_keys.items()
                }
                regularizer = component(
                    **{argument: coefficient for argument, (_, coefficient) in read.items()},
                    **settings(self, components),
                )
                for term, coefficient in regularizer.coefficients().items():
                    # The regularizer keeps the coefficient objects it is given.
                    by_term[term] = next(key for key, c in read.values() if c is coefficient)
                regularizers.append(regularizer)
        sections = {term: getattr(self, field) for term, field in by_term.items()}
        owned = sorted(t for t, c in sections.items() if not isinstance(c, SharedCoefficient))
        for term, section in sections.items():
            if isinstance(section, SharedCoefficient) and section.of not in owned:
                reason = (
                    f"the coefficient of term '{term}' is shared with a term of method "
                    f"{method!r} that has a coefficient of its own; accepted: "
                    f"{', '.join(owned) or 'none'}"
                )
                raise Problems((f"regularization.{by_term[term]}.of", section.of, reason))
        return Regularization(tuple(regularizers)), by_term

    def _coefficient(
        self, keys: tuple[str, ...], epochs: int, references: ReferenceReader | None
    ) -> tuple[str, AbstractCoefficient]:
        """The first of `keys` that is set, and the coefficient it builds."""
        field = next(key for key in keys if getattr(self, key) is not None)
        coefficient: Coefficient = getattr(self, field)
        # A budget starts from the term's usual scale: the default of the last key, the
        # global one (a local term's coefficient means the same as the global one).
        typical = getattr(RegularizationConfig(), keys[-1]).start
        try:
            if not isinstance(coefficient, LossBudgetCoefficient) or coefficient.reference is None:
                return field, coefficient.build(epochs=epochs, typical=typical)
            if references is not None:
                reference = references(field, coefficient)
            else:  # the structure only: a run directory is a placeholder
                reference = (
                    (0.0,) if isinstance(coefficient.reference, str) else coefficient.reference
                )
            return field, coefficient.build(epochs=epochs, typical=typical, reference=reference)
        except ValueError as e:  # the coefficient's own checks, e.g. maximum < initial
            if isinstance(e, Problems):
                raise
            raise Problems((f"regularization.{field}", coefficient.kind, str(e))) from None


ReferenceReader = Callable[[str, LossBudgetCoefficient], float | tuple[float, ...]]
Settings = Callable[[RegularizationConfig, frozenset[str]], dict[str, Any]]


def _coefficients_only(config: RegularizationConfig, components: frozenset[str]) -> dict[str, Any]:
    return {}


def _local(c: RegularizationConfig, components: frozenset[str]) -> dict[str, Any]:
    # With `local-error-biased` the local terms share its one sampled step: biased.
    biased = BiasedLocalError.name in components
    return dict(sampling="biased" if biased else c.local_sampling, gradient=c.local_gradient)


#: Method components -> the settings of the regularization section each takes besides
#: its coefficients (which its class names in `coefficient_keys`), given the section and
#: the method's components; the order fixes the order of the integrals along the solve.
#: A new component is its class plus one line here.
COMPONENTS: dict[type[AbstractRegularizer], Settings] = {
    GlobalError: _coefficients_only,
    GlobalStiffness: _coefficients_only,
    LocalError: _local,
    BiasedLocalError: lambda c, components: dict(gradient=c.local_gradient),
    LocalStiffness: _local,
    Steer: lambda c, components: dict(b=c.steer_b),
    TayNODE: lambda c, components: dict(order=c.taynode_order),
    RNODE: _coefficients_only,
}
_BY_NAME = {component.name: component for component in COMPONENTS}
#: Valid components of `method`.
METHOD_COMPONENTS: tuple[str, ...] = (VANILLA, *_BY_NAME)


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
    if VANILLA in parts and len(parts) > 1:
        return f"'{VANILLA}' cannot be combined with other components"
    for i, a in enumerate(parts):
        for b in parts[i + 1 :]:
            quantity = _BY_NAME[a].regularizes if a != VANILLA else None
            if quantity is not None and quantity == _BY_NAME[b].regularizes:
                return (
                    f"components '{a}' and '{b}' cannot be used together (both "
                    f"regularize the {quantity})"
                )
    return None


def parse_method(method: str) -> frozenset[str]:
    """``"error+stiffness"`` -> ``frozenset({"error", "stiffness"})``. Raises
    `ConfigError` naming the valid components."""
    problem = method_problem(method)
    if problem is not None:
        raise ConfigError(f"invalid value for 'method': {method!r} ({problem})")
    return frozenset(p.strip() for p in method.split("+"))
