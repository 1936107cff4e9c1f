"""A task's evaluation metric: its name in a run's files, and what a report needs to
show it and compare it with vanilla's (`nderegs.report` reads these properties and
never the name itself, so a task with a new metric needs no change there)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """An evaluation metric, as a task declares it (`AbstractTask.metric`).

    A plain frozen dataclass, not an `eqx.Module`: it is a constant of a task class,
    never traced or stored in a model, and comparing two by value (two tasks that
    declare the same metric) comes with it.

    The defaults are those of a loss: lower is better, shown as recorded with 4
    significant digits, compared with vanilla's by ratio and matched within 1 %.
    """

    #: Its name in a run's files: `summary.json`'s "metric", the `train_<name>` and
    #: `test_<name>` columns of `metrics.jsonl` and of `comparison.csv`.
    name: str
    #: Its short name in table headers: "acc." in "Test acc. (%)".
    label: str
    #: Whether a higher value is better (an accuracy) or a lower one (a loss).
    higher_is_better: bool = False
    #: The unit of the values shown ("" for none), after the label: "(%)", "(nats)".
    unit: str = ""
    #: Shown value = scale × recorded value (100: a recorded fraction shown in %).
    scale: float = 1.0
    #: Fixed decimals of the values shown in Markdown; None: `significant` digits.
    decimals: int | None = None
    significant: int = 4
    #: Compared with vanilla's by difference (method mean − vanilla mean) rather than
    #: by ratio: a log-likelihood can be 0 or negative, so its ratio means nothing.
    by_difference: bool = False
    #: How close to vanilla's mean a sweep's setting must come to count as matching it
    #: ("within one point", `matches`): `tolerance` worse at most, as a fraction of
    #: vanilla's mean when `relative_tolerance`, else in the metric's recorded units.
    tolerance: float = 0.01
    relative_tolerance: bool = True

    @property
    def tolerance_words(self) -> str:
        """The tolerance of `matches` in words, for report headers: "at most 1.01 ×
        vanilla's mean", "at least vanilla's mean − 1 point" (a percentage's points)."""
        if self.relative_tolerance:
            factor = 1 - self.tolerance if self.higher_is_better else 1 + self.tolerance
            return f"at {'least' if self.higher_is_better else 'most'} {factor:g} × vanilla's mean"
        unit = "point" if self.unit == "%" else self.unit
        amount = f"{self.tolerance * self.scale:g} {unit}".rstrip()
        bound = "least vanilla's mean −" if self.higher_is_better else "most vanilla's mean +"
        return f"at {bound} {amount}"

    @classmethod
    def generic(cls, name: str) -> Metric:
        """A metric no task declares (a loss by the defaults), labelled by its name."""
        return cls(name=name, label=name)

    @property
    def column_label(self) -> str:
        """Its label with its unit, e.g. "acc. (%)": table headers say "Train " or
        "Test " before it."""
        return self.label + (f" ({self.unit})" if self.unit else "")

    @property
    def axis_label(self) -> str:
        """The label of a plot axis (and of `pareto.md`'s column) of test values: its
        name, and "(lower is better)" where lower is, else its unit if it has one."""
        note = "lower is better" if not self.higher_is_better else self.unit
        return f"test {self.name}" + (f" ({note})" if note else "")

    @property
    def better_sign(self) -> float:
        """+1 where higher is better, −1 where lower is: sign × value grows as the
        metric gets better."""
        return 1.0 if self.higher_is_better else -1.0

    def matches(self, value: float, baseline: float) -> bool:
        """Whether `value` is at most `tolerance` worse than `baseline` (vanilla's mean;
        a positive one where the tolerance is relative)."""
        step = -self.tolerance if self.higher_is_better else self.tolerance
        if self.relative_tolerance:
            return self._no_worse(value, baseline * (1 + step))
        return self._no_worse(value, baseline + step)

    def _no_worse(self, value: float, bound: float) -> bool:
        return value >= bound if self.higher_is_better else value <= bound


#: A classifier's: the fraction of test examples classified right, shown in %.
ACCURACY = Metric(
    name="accuracy",
    label="acc.",
    higher_is_better=True,
    unit="%",
    scale=100.0,
    decimals=2,
    tolerance=0.01,
    relative_tolerance=False,
)
#: A regression's (the latent ODE's, the spiral SDE's): a mean squared error.
MSE = Metric(name="mse", label="MSE")
#: A density's: the mean negative log-likelihood of the test set, in nats; it can be
#: negative, so it is compared with vanilla's by difference.
NLL = Metric(
    name="nll",
    label="NLL",
    unit="nats",
    by_difference=True,
    tolerance=0.05,
    relative_tolerance=False,
)
