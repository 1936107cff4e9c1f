"""The method and the regularization section: the registry of method components (each
name written once, in `COMPONENTS`) and the coefficients they read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Optional

from pydantic import Field

from ..regularization import (
    AbstractCoefficient,
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

    def sampling(self, components: frozenset[str]) -> Literal["unbiased", "biased"]:
        """The local sampling: biased with `local-error-biased`, else `local_sampling`."""
        return "biased" if "local-error-biased" in components else self.local_sampling

    def local_error_field(self) -> str:
        return "local_error" if self.local_error is not None else "error"

    def local_stiffness_field(self) -> str:
        return "local_stiffness" if self.local_stiffness is not None else "stiffness"

    def build(
        self, method: str, *, epochs: int, references: ReferenceReader | None = None
    ) -> Regularization:
        """The `Regularization` of `method`, its coefficients built for a run of
        `epochs` epochs; `references(key, budget)` gives a loss budget's reference as
        the budget compares it (a run directory's trajectory read, a metric's sign
        applied). Without it, a run directory stands as a placeholder: the method's
        structure is right, the budget's reference is not. Raises `Problems` naming
        the key of a coefficient that cannot be built."""
        return self.build_reading(method, epochs=epochs, references=references)[0]

    def build_reading(
        self, method: str, *, epochs: int, references: ReferenceReader | None = None
    ) -> tuple[Regularization, dict[str, str]]:
        """The `Regularization` of `method` and, for each of its terms, the key of this
        section its coefficient was built from."""
        components = parse_method(method)
        read = _CoefficientReader(self, epochs, references)
        regularizers = []
        for name, (_, make) in COMPONENTS.items():
            if name in components:
                read.fields.clear()
                regularizer = make(self, components, read)
                terms = regularizer.coefficients()
                read.by_term.update(zip(terms, read.fields))
                regularizers.append(regularizer)
        owned = sorted(t for t, f in read.by_term.items() if not self._is_shared(f))
        for term, field in read.by_term.items():
            coefficient = getattr(self, field)
            if isinstance(coefficient, SharedCoefficient) and coefficient.of not in owned:
                raise Problems(
                    (
                        f"regularization.{field}.of",
                        coefficient.of,
                        f"the coefficient of term '{term}' is shared with a term of method "
                        f"{method!r} that has a coefficient of its own; accepted: "
                        f"{', '.join(owned) or 'none'}",
                    )
                )
        return Regularization(tuple(regularizers)), read.by_term

    def _is_shared(self, field: str) -> bool:
        return isinstance(getattr(self, field), SharedCoefficient)


class _CoefficientReader:
    """Builds the coefficient of a key of the regularization section, recording which
    keys a component read (in the order of its terms)."""

    def __init__(
        self, config: RegularizationConfig, epochs: int, references: ReferenceReader | None
    ):
        self.config, self.epochs, self.references = config, epochs, references
        self.fields: list[str] = []
        self.by_term: dict[str, str] = {}

    def __call__(self, field: str) -> AbstractCoefficient:
        self.fields.append(field)
        coefficient: Coefficient = getattr(self.config, field)
        # A budget starts from the term's usual scale: the default of its global key.
        default = RegularizationConfig.model_fields[field.removeprefix("local_")]
        typical = default.default_factory().start  # pyright: ignore[reportOptionalCall, reportCallIssue]
        try:
            if isinstance(coefficient, LossBudgetCoefficient) and coefficient.reference is not None:
                if self.references is not None:
                    reference = self.references(field, coefficient)
                elif isinstance(coefficient.reference, str):
                    reference = (0.0,)  # a placeholder: the structure only
                else:
                    reference = coefficient.reference
                return coefficient.build_with_reference(
                    reference, epochs=self.epochs, typical=typical
                )
            return coefficient.build(epochs=self.epochs, typical=typical)
        except ValueError as e:  # the coefficient's own checks, e.g. maximum < initial
            if isinstance(e, Problems):
                raise
            raise Problems((f"regularization.{field}", coefficient.kind, str(e))) from None


ReferenceReader = Callable[[str, LossBudgetCoefficient], float | tuple[float, ...]]
Make = Callable[[RegularizationConfig, frozenset[str], _CoefficientReader], AbstractRegularizer]

#: Method components -> their class and how each is made from the regularization
#: section (`read(key)` builds the coefficient of a key); the order fixes the order of
#: the integrals along the solve. A new component is its class plus one line here.
COMPONENTS: dict[str, tuple[type[AbstractRegularizer], Make]] = {
    "error": (GlobalError, lambda c, components, read: GlobalError(coefficient=read("error"))),
    "stiffness": (
        GlobalStiffness,
        lambda c, components, read: GlobalStiffness(coefficient=read("stiffness")),
    ),
    "local-error": (
        LocalError,
        lambda c, components, read: LocalError(
            name="local-error",
            sampling=c.sampling(components),
            coefficient=read(c.local_error_field()),
            gradient=c.local_gradient,
        ),
    ),
    "local-error-biased": (
        LocalError,
        lambda c, components, read: LocalError(
            name="local-error-biased",
            sampling="biased",
            coefficient=read(c.local_error_field()),
            gradient=c.local_gradient,
        ),
    ),
    "local-stiffness": (
        LocalStiffness,
        lambda c, components, read: LocalStiffness(
            sampling=c.sampling(components),
            coefficient=read(c.local_stiffness_field()),
            gradient=c.local_gradient,
        ),
    ),
    "steer": (Steer, lambda c, components, read: Steer(b=c.steer_b)),
    "taynode": (
        TayNODE,
        lambda c, components, read: TayNODE(coefficient=read("taynode"), order=c.taynode_order),
    ),
    "rnode": (
        RNODE,
        lambda c, components, read: RNODE(kinetic=read("kinetic"), jacobian=read("jacobian")),
    ),
}
#: Valid components of `method`.
METHOD_COMPONENTS: tuple[str, ...] = ("vanilla", *COMPONENTS)


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
    for i, a in enumerate(parts):
        for b in parts[i + 1 :]:
            quantity = COMPONENTS[a][0].regularizes if a != "vanilla" else None
            if quantity is not None and quantity == COMPONENTS[b][0].regularizes:
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
