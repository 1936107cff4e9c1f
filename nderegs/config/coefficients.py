"""The coefficient λ of a regularization term, as a config gives it: a constant, an
exponential anneal, a budget (NFE or loss) that sets λ during training, or a share of
another term's coefficient. Each variant builds its `nderegs.regularization`
coefficient."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import optax
from pydantic import Field, field_validator

from ..regularization import AbstractCoefficient, Constant, LossBudget, NFEBudget, Scheduled, Shared
from .base import Choice, Float, Int, Str, Variant


class AbstractCoefficientConfig(Variant):
    """A coefficient section, chosen by its `kind`."""

    tag_field = "kind"


class ConstantSchedule(AbstractCoefficientConfig):
    """λ = `start` throughout training."""

    kind: Literal["constant"] = "constant"
    start: Float = Field(default=0.0, ge=0)

    def build(self, *, epochs: int, typical: float) -> AbstractCoefficient:
        return Constant(self.start)


class ExponentialSchedule(AbstractCoefficientConfig):
    """Paper 1's per-epoch anneal λ(e) = λ₀·exp(−k·e), k = log(λ₀/λ₁)/(epochs − 1):
    the first epoch uses λ₀ = `start` and the last λ₁ = `end`."""

    kind: Literal["exponential"] = "exponential"
    start: Float = Field(gt=0)
    end: Float = Field(gt=0)

    def build(self, *, epochs: int, typical: float) -> AbstractCoefficient:
        rate = math.exp(math.log(self.end / self.start) / max(epochs - 1, 1))
        schedule = optax.exponential_decay(self.start, 1, decay_rate=rate, staircase=True)
        return Scheduled(schedule)


class NFEBudgetCoefficient(AbstractCoefficientConfig):
    """`nderegs.NFEBudget`: λ rises while the training solves' mean NFE is above
    `target` and falls below it, one update per epoch (see its docstring)."""

    kind: Literal["nfe_budget"] = "nfe_budget"
    #: Function evaluations per training solve (per batch) to stay under.
    target: Float = Field(gt=0)
    #: λ in the first epoch; None: the term's usual scale (its default constant). Start
    #: high rather than low: a budget corrects a start that is too strong, not one that
    #: lets the field grow stiff.
    initial: Float | None = Field(default=None, gt=0)
    #: Step of the dual ascent on log λ per epoch.
    rate: Float = Field(default=0.5, gt=0)
    #: The largest λ; None: 10 × initial.
    maximum: Float | None = Field(default=None, gt=0)

    def build(self, *, epochs: int, typical: float) -> AbstractCoefficient:
        return NFEBudget(target=self.target, **_budget_settings(self, typical))


class LossBudgetCoefficient(AbstractCoefficientConfig):
    """`nderegs.LossBudget`: the strongest λ whose training loss stays within
    (1 + `tolerance`) of the reference, one update per epoch. The reference is a
    number, or an unregularized run's directory (``{seed}`` is replaced by the seed)
    whose per-epoch training loss (or metric) is the reference at each epoch. The first
    `warmup` epochs do not move λ: it is `initial` in them with a reference (the field
    takes its shape before the loss decides; start high), 0 without one (they measure
    it)."""

    kind: Literal["loss_budget"] = "loss_budget"
    #: The relative loss allowed on top of the reference (0.01: 1 %).
    tolerance: Float = Field(ge=0)
    #: The reference: a number, a run directory (e.g.
    #: ``runs/digits-vanilla-seed{seed}``), or None: measured in the warm-up.
    reference: Float | Str | None = None
    #: Epochs before the constraint applies; None: half the epochs.
    warmup: Int | None = Field(default=None, ge=0)
    #: What is constrained: the task loss, or the training metric (an accuracy as its
    #: negative, so 0.01 keeps it within 1 % of the reference's, about 1 point).
    constrain: Literal["task_loss", "metric"] = "task_loss"
    #: As for `nfe_budget`.
    initial: Float | None = Field(default=None, gt=0)
    rate: Float = Field(default=0.5, gt=0)
    maximum: Float | None = Field(default=None, gt=0)

    @field_validator("reference", mode="before")
    @classmethod
    def _check_reference(cls, reference: Any) -> Any:
        # One message for the union, not one per member.
        if reference is None or isinstance(reference, float | str):
            return reference
        if isinstance(reference, int) and not isinstance(reference, bool):
            return reference
        raise ValueError("expected a number, a run directory's path, or null")

    def build(
        self, *, epochs: int, typical: float, reference: float | tuple[float, ...] | None = None
    ) -> AbstractCoefficient:
        """The budget, compared with `reference` (a run directory's per-epoch values, as
        `ExperimentConfig` reads them), else with the section's number."""
        if reference is None and isinstance(self.reference, str):
            raise ValueError(
                "a loss budget with a run directory as reference is built by "
                "ExperimentConfig, which reads that run's metrics"
            )
        warmup = self.warmup if self.warmup is not None else max(epochs // 2, 1)
        return LossBudget(
            tolerance=self.tolerance,
            reference=self.reference if reference is None else reference,
            warmup=warmup,
            **_budget_settings(self, typical),
        )


def _budget_settings(
    budget: NFEBudgetCoefficient | LossBudgetCoefficient, typical: float
) -> dict[str, Any]:
    return dict(initial=budget.initial or typical, rate=budget.rate, maximum=budget.maximum)


class SharedCoefficient(AbstractCoefficientConfig):
    """λ = `ratio` × the coefficient of the term `of` in the same method (e.g. RNODE's
    Jacobian term following its kinetic term's budget: ``{kind: shared, of:
    rnode-kinetic}``)."""

    kind: Literal["shared"] = "shared"
    #: The term whose coefficient is shared (a term name: error, stiffness, local-error,
    #: local-error-biased, local-stiffness, taynode, rnode-kinetic, rnode-jacobian).
    of: Str
    ratio: Float = Field(default=1.0, gt=0)

    def build(self, *, epochs: int, typical: float) -> AbstractCoefficient:
        return Shared(term=self.of, ratio=self.ratio)


#: The coefficient kinds that set λ during training.
BUDGETS = (NFEBudgetCoefficient, LossBudgetCoefficient)

Coefficient = Annotated[
    ConstantSchedule
    | ExponentialSchedule
    | NFEBudgetCoefficient
    | LossBudgetCoefficient
    | SharedCoefficient,
    Choice(default=ConstantSchedule),
]


def constant(value: float):
    """A default factory: ``Field(default_factory=constant(0.1))``."""
    return lambda: ConstantSchedule(start=value)
