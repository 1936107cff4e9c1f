"""`ExperimentConfig`: one experiment, as one YAML file describes it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..regularization import LossBudget, Regularization, Steer, VANILLA
from ..tasks import AbstractTask, Arrays
from ..tracking import TRACKERS
from .base import Bool, config_error_of, Int, invalid, Problems, Section, Str
from .coefficients import BUDGETS, ConstantSchedule, LossBudgetCoefficient
from .optimizers import Adam, OptimizerConfig
from .parallel import ParallelConfig
from .regularization import method_problem, parse_method, RegularizationConfig
from .solvers import solver_names, SolverConfig
from .tasks import Classifier, Density, TaskConfig


class TrainConfig(Section):
    """Training-loop bookkeeping."""

    #: Epochs between evaluations (one metrics.jsonl row each).
    eval_every: Int = Field(default=1, gt=0)
    checkpoint_every: Int = Field(default=1, gt=0)
    #: Batch size for evaluation; None -> optim.batch_size.
    eval_batch_size: Int | None = Field(default=None, gt=0)
    #: Repetitions when timing prediction.
    predict_repeats: Int = Field(default=5, gt=0)
    progress: Bool = True


class ExperimentConfig(Section):
    """A complete experiment. ``ExperimentConfig()`` equals ``configs/digits.yaml``."""

    #: Run name prefix.
    name: Str = "digits"
    seed: Int = Field(default=0, ge=0)
    output_dir: Str = "runs"
    #: '+'-joined regularization components, see METHOD_COMPONENTS.
    method: Str = VANILLA
    task: TaskConfig = Field(default_factory=Classifier)
    solver: SolverConfig = Field(default_factory=SolverConfig)
    regularization: RegularizationConfig = Field(default_factory=RegularizationConfig)
    optim: OptimizerConfig = Field(default_factory=Adam)
    train: TrainConfig = Field(default_factory=TrainConfig)
    parallel: ParallelConfig = Field(default_factory=ParallelConfig)
    #: Where per-epoch metrics are mirrored besides metrics.jsonl: tensorboard, wandb.
    tracking: list[Str] = Field(default_factory=list)

    @field_validator("tracking")
    @classmethod
    def _check_tracking(cls, tracking: list[str]) -> list[str]:
        unknown = [name for name in tracking if name not in TRACKERS]
        if unknown:
            raise ValueError(
                f"unknown tracker {unknown[0]!r}; accepted: {', '.join(TRACKERS)} (a list, "
                "e.g. tracking: [tensorboard])"
            )
        if len(set(tracking)) != len(tracking):
            raise ValueError("a tracker is listed more than once")
        return tracking

    @field_validator("method")
    @classmethod
    def _check_method(cls, method: str) -> str:
        problem = method_problem(method)
        if problem is not None:
            raise ValueError(problem)
        return "+".join(p.strip() for p in method.split("+"))  # spaces around '+' go

    @model_validator(mode="after")
    def _cross_checks(self) -> ExperimentConfig:
        problems: list[tuple[str, object, str]] = []
        task = self.task
        solvers = solver_names(task.task_class.equation)
        if self.solver.name not in solvers:
            reason = f"does not apply to task {task.name!r}; accepted: {', '.join(solvers)}"
            problems.append(("solver.name", self.solver.name, reason))
        try:  # the structure only: reading a budget's reference waits for training
            regularizers = self.method_regularization(references=False).regularizers
        except Problems as e:
            raise Problems(*problems, *e.problems) from None
        adjoint = self.solver.adjoint
        # A flow-matching step solves nothing but the sampling solve.
        flow_matching = isinstance(task, Density) and task.training == "flow_matching"
        for component in regularizers:
            reason = None if adjoint.differentiates_through_solver else component.solver_gradients()
            if reason is not None:
                reason = (
                    f"method component '{component.name}' needs gradients through the "
                    f"solver's steps ({reason}), which this adjoint cannot give. Use "
                    "solver.adjoint=recursive_checkpoint (or direct), or a local method "
                    "(local-error, local-stiffness) with unbiased sampling or "
                    "regularization.local_gradient=step, which works with any adjoint"
                )
                problems.append(("solver.adjoint.name", adjoint.name, reason))
            reason = task.task_class.rejects(component)
            if reason is not None:
                reason = f"the {task.name} task cannot train with '{component.name}': it {reason}"
                problems.append(("method", self.method, reason))
            if isinstance(component, Steer) and flow_matching:
                reason = (
                    "flow matching solves no training trajectory whose end time STEER could "
                    "draw; use another method, or task.training=maximum_likelihood"
                )
                problems.append(("method", self.method, reason))
            span, b = abs(self.solver.t1 - self.solver.t0), self.regularization.steer_b
            if isinstance(component, Steer) and not 0 < b < span:
                reason = (
                    f"method '{Steer.name}' needs 0 < regularization.steer_b < "
                    f"|solver.t1 - solver.t0| = {span}"
                )
                problems.append(("regularization.steer_b", b, reason))
        for field, section in self.regularization if flow_matching else ():
            if isinstance(section, LossBudgetCoefficient) and section.constrain == "metric":
                reason = (
                    "a flow-matching step computes no likelihood for the budget to "
                    "constrain; use constrain: task_loss (the flow-matching loss)"
                )
                problems.append((f"regularization.{field}.constrain", "metric", reason))
        if problems:
            raise Problems(*problems)
        return self

    def check_trains_something(self) -> None:
        """Raise `ConfigError` when a method component would be a silent no-op (all its
        coefficients constant 0, so the run would train exactly like vanilla), the
        config's budgets would set nothing (none weighs a term of the method, e.g. with
        vanilla), a loss budget's warm-up covers the run, or its reference run cannot be
        read. Checked when a run starts (not when a config is read, so old run
        directories still load)."""
        problems = []
        regularization, read = self._built(references=True)
        for component in regularization.regularizers:
            fields = sorted({read[term] for term in component.coefficients()})
            sections = [getattr(self.regularization, f) for f in fields]
            if fields and all(isinstance(s, ConstantSchedule) and s.start == 0 for s in sections):
                keys = " and ".join(f"regularization.{f}.start" for f in fields)
                reason = (
                    f"method component '{component.name}' is weighed by {keys}, and with 0 "
                    "it would train exactly like vanilla. Set it, e.g. "
                    f"regularization.{fields[0]}.start=0.01"
                )
                problems.append(invalid(f"regularization.{fields[0]}.start", 0.0, reason))
        used = set(read.values())
        weighed = ", ".join(f"regularization.{f}" for f in sorted(used)) or "none"
        # Budgets the method does not use are fine next to one it does (one config, e.g.
        # of a comparison, may set every coefficient by a budget); alone they set nothing.
        budgets = {f: s for f, s in self.regularization if isinstance(s, BUDGETS)}
        for field, section in budgets.items() if used.isdisjoint(budgets) else ():
            reason = (
                f"a budget sets the coefficient of a term, and method {self.method!r} has no "
                f"term weighed by regularization.{field} (its coefficients: {weighed}); use the "
                "budget on one of those, or a method with a regularizer (a budget on vanilla "
                "has nothing to set)"
            )
            problems.append(invalid(f"regularization.{field}.kind", section.kind, reason))
        for term, coefficient in regularization.coefficients().items():
            if isinstance(coefficient, LossBudget) and coefficient.delay >= self.optim.epochs:
                reason = (
                    f"the warm-up covers all {self.optim.epochs} epochs (optim.epochs), so the "
                    "loss budget would never set λ; shorten it"
                )
                problems.append(
                    invalid(f"regularization.{read[term]}.warmup", coefficient.delay, reason)
                )
        measures = self._loss_budget_measures(used)
        if len(measures) > 1:
            reason = (
                "the loss budgets of one method constrain one quantity: give them the same "
                "constrain (task_loss or metric)"
            )
            problems.append(invalid("regularization", sorted(measures), reason))
        if problems:
            raise config_error_of(problems)

    def _loss_budget_measures(self, fields: set[str]) -> set[str]:
        sections = [getattr(self.regularization, f) for f in fields]
        return {s.constrain for s in sections if isinstance(s, LossBudgetCoefficient)}

    def loss_budget_measure(self) -> str:
        """What the method's loss budgets constrain: "task_loss" or "metric"."""
        _, read = self._built(references=False)
        return min(self._loss_budget_measures(set(read.values())), default="task_loss")

    def method_regularization(self, *, references: bool = True) -> Regularization:
        """The method's `Regularization`, its coefficients built for `optim.epochs`.
        With `references`, a loss budget's reference run is read (training needs it);
        without, the structure only (the components, their needs; configs of finished
        runs load even after their reference run moved)."""
        return self._built(references=references)[0]

    def _built(self, *, references: bool) -> tuple[Regularization, dict[str, str]]:
        """`method_regularization` and the section's key of each term's coefficient;
        with `references`, a problem is a `ConfigError` (without, the validators' `Problems`)."""
        try:
            return self.regularization.build_reading(
                self.method,
                epochs=self.optim.epochs,
                references=self._reference if references else None,
            )
        except Problems as e:
            if not references:
                raise
            problems = [invalid(k, v, r) for k, v, r in e.problems]
            raise config_error_of(problems) from None

    def _reference(self, field: str, budget: LossBudgetCoefficient) -> float | tuple[float, ...]:
        """A loss budget's reference as it compares it: a number, or the per-epoch
        training loss (or metric) of a finished run directory, epochs between evaluated
        ones interpolated; a metric negated where higher is better (both ways)."""
        metric = self.task.task_class.metric
        sign = -1.0 if budget.constrain == "metric" and metric.higher_is_better else 1.0
        if not isinstance(budget.reference, str):
            assert budget.reference is not None
            return sign * budget.reference

        def problem(reason: str) -> Problems:
            return Problems((f"regularization.{field}.reference", budget.reference, reason))

        try:
            path = Path(budget.reference.format(seed=self.seed))
        except (KeyError, IndexError, ValueError) as e:
            raise problem(f"only {{seed}} may stand in the path ({e!r})") from None
        if not (path / "summary.json").is_file():
            raise problem(
                f"{path} is not a finished run directory (no summary.json); expected the "
                "finished unregularized run of this task and seed, e.g. "
                "runs/NAME-vanilla-seed{seed}"
            )
        column = "train_loss" if budget.constrain == "task_loss" else f"train_{metric.name}"
        lines = (path / "metrics.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
        points = [(row["epoch"], row[column]) for row in rows if row.get(column) is not None]
        if not points:
            raise problem(
                f"{path}/metrics.jsonl has no '{column}' column: is it a run of the "
                f"{self.task.name} task?"
            )
        epochs, values = zip(*points)
        every_epoch = np.interp(np.arange(1, max(epochs) + 1), epochs, values)
        return tuple(float(sign * v) for v in every_epoch)

    @property
    def components(self) -> frozenset[str]:
        """The set of method components, e.g. ``frozenset({"error", "stiffness"})``."""
        return parse_method(self.method)

    def build(self, *, references: bool = True) -> tuple[AbstractTask, Arrays]:
        """The task, with the method's `Regularization`, and its data (`references`:
        see `method_regularization`)."""
        regularization = self.method_regularization(references=references)
        return self.task.build(self.seed, regularization, self.solver)
