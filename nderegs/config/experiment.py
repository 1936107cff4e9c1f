"""`ExperimentConfig`: one experiment, as one YAML file describes it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..regularization import LossBudget, Steer, VANILLA
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
        problems = []
        solvers = solver_names(self.task.equation)
        if self.solver.name not in solvers:
            problems.append(
                (
                    "solver.name",
                    self.solver.name,
                    f"does not apply to task {self.task.name!r}; accepted: {', '.join(solvers)}",
                )
            )
        try:  # the structure only: reading a budget's reference waits for training
            regularization = self.method_regularization(references=False)
        except Problems as e:
            raise Problems(*problems, *e.problems) from None
        if not self.solver.adjoint.differentiates_through_solver:
            for component in regularization.regularizers:
                reason = component.solver_gradients()
                if reason is not None:
                    problems.append(
                        (
                            "solver.adjoint.name",
                            self.solver.adjoint.name,
                            f"method component '{component.name}' needs gradients through "
                            f"the solver's steps ({reason}), which this adjoint cannot give. "
                            "Use solver.adjoint=recursive_checkpoint (or direct), or a local "
                            "method (local-error, local-stiffness) with unbiased sampling or "
                            "regularization.local_gradient=step, which works with any adjoint",
                        )
                    )
        task_class = self.task.task_class
        for component in regularization.regularizers:
            reason = task_class.rejected_components.get(type(component))
            if reason is None and self.task.equation == "sde":
                reason = component.ode_only
            if reason is not None:
                problems.append(
                    (
                        "method",
                        self.method,
                        f"the {self.task.name} task cannot train with '{component.name}': it {reason}",
                    )
                )
        problems += self._flow_matching_problems(regularization)
        if any(isinstance(component, Steer) for component in regularization.regularizers):
            span = abs(self.solver.t1 - self.solver.t0)
            b = self.regularization.steer_b
            if not 0 < b < span:
                problems.append(
                    (
                        "regularization.steer_b",
                        b,
                        f"method '{Steer.name}' needs 0 < regularization.steer_b < |solver.t1 - "
                        f"solver.t0| = {span}",
                    )
                )
        if problems:
            raise Problems(*problems)
        return self

    def _flow_matching_problems(self, regularization) -> list:
        """A flow-matching step solves nothing but the sampling solve: STEER, which
        draws the end time of the training solve, has nothing to act on, and no
        training metric (a likelihood) is computed for a budget to constrain."""
        if not (isinstance(self.task, Density) and self.task.training == "flow_matching"):
            return []
        problems = []
        if any(isinstance(c, Steer) for c in regularization.regularizers):
            reason = (
                "flow matching solves no training trajectory whose end time STEER could "
                "draw; use another method, or task.training=maximum_likelihood"
            )
            problems.append(("method", self.method, reason))
        for field in RegularizationConfig.model_fields:
            section = getattr(self.regularization, field)
            if isinstance(section, LossBudgetCoefficient) and section.constrain == "metric":
                reason = (
                    "a flow-matching step computes no likelihood for the budget to "
                    "constrain; use constrain: task_loss (the flow-matching loss)"
                )
                problems.append((f"regularization.{field}.constrain", "metric", reason))
        return problems

    def check_trains_something(self) -> None:
        """Raise `ConfigError` when a method component would be a silent no-op (all its
        coefficients constant 0, so the run would train exactly like vanilla) or the
        config's budgets would set nothing (none weighs a term of the method, e.g. with
        vanilla).
        Checked when a run starts (not when a config is read, so old run directories
        still load)."""
        problems = []
        try:
            regularization, read = self.regularization.build_reading(
                self.method, epochs=self.optim.epochs, references=self._reference
            )
        except Problems as e:
            raise config_error_of(
                [invalid(k or "regularization", v, r) for k, v, r in e.problems]
            ) from None
        for component in regularization.regularizers:
            fields = sorted({read[term] for term in component.coefficients()})
            sections = [getattr(self.regularization, f) for f in fields]
            if fields and all(isinstance(s, ConstantSchedule) and s.start == 0 for s in sections):
                keys = " and ".join(f"regularization.{f}.start" for f in fields)
                problems.append(
                    invalid(
                        f"regularization.{fields[0]}.start",
                        0.0,
                        f"method component '{component.name}' is weighed by {keys}, and with "
                        "0 it would train exactly like vanilla. Set it, e.g. "
                        f"regularization.{fields[0]}.start=0.01",
                    )
                )
        used = set(read.values())
        # Budgets the method does not use are fine next to one it does (one config, e.g.
        # of a comparison, may set every coefficient by a budget); alone they set nothing.
        budgeted = any(isinstance(getattr(self.regularization, f), BUDGETS) for f in used)
        for field in RegularizationConfig.model_fields:
            section = getattr(self.regularization, field)
            if isinstance(section, BUDGETS) and field not in used and not budgeted:
                weighed = ", ".join(f"regularization.{f}" for f in sorted(used)) or "none"
                problems.append(
                    invalid(
                        f"regularization.{field}.kind",
                        section.kind,
                        f"a budget sets the coefficient of a term, and method {self.method!r} "
                        f"has no term weighed by regularization.{field} (its coefficients: "
                        f"{weighed}); use the budget on one of those, or a method with a "
                        "regularizer (a budget on vanilla has nothing to set)",
                    )
                )
        for term, coefficient in regularization.coefficients().items():
            if isinstance(coefficient, LossBudget) and coefficient.delay >= self.optim.epochs:
                problems.append(
                    invalid(
                        f"regularization.{read[term]}.warmup",
                        coefficient.delay,
                        f"the warm-up covers all {self.optim.epochs} epochs (optim.epochs), "
                        "so the loss budget would never set λ; shorten it",
                    )
                )
        measures = {
            getattr(self.regularization, field).constrain
            for field in used
            if isinstance(getattr(self.regularization, field), LossBudgetCoefficient)
        }
        if len(measures) > 1:
            problems.append(
                invalid(
                    "regularization",
                    sorted(measures),
                    "the loss budgets of one method constrain one quantity: give them the "
                    "same constrain (task_loss or metric)",
                )
            )
        if problems:
            raise config_error_of(problems)

    def loss_budget_measure(self) -> str:
        """What the method's loss budgets constrain: "task_loss" or "metric"."""
        _, read = self.regularization.build_reading(self.method, epochs=self.optim.epochs)
        for field in sorted(set(read.values())):
            section = getattr(self.regularization, field)
            if isinstance(section, LossBudgetCoefficient):
                return section.constrain
        return "task_loss"

    def method_regularization(self, *, references: bool = True):
        """The method's `Regularization`, its coefficients built for `optim.epochs`.
        With `references`, a loss budget's reference run is read (training needs it);
        without, the structure only (the components, their needs; configs of finished
        runs load even after their reference run moved)."""
        try:
            return self.regularization.build(
                self.method,
                epochs=self.optim.epochs,
                references=self._reference if references else None,
            )
        except Problems as e:
            if not references:
                raise
            raise config_error_of(
                [invalid(k or "regularization", v, r) for k, v, r in e.problems]
            ) from None

    def _reference(self, field: str, budget: LossBudgetCoefficient) -> float | tuple[float, ...]:
        """A loss budget's reference as it compares it: a number, or the per-epoch
        training loss (or metric) of a finished run directory, epochs between evaluated
        ones interpolated; a metric negated where higher is better (both ways)."""
        task = self.task.task_class
        sign = -1.0 if budget.constrain == "metric" and task.metric.higher_is_better else 1.0
        if not isinstance(budget.reference, str):
            assert budget.reference is not None
            return sign * budget.reference
        key = f"regularization.{field}.reference"
        try:
            path = Path(budget.reference.format(seed=self.seed))
        except (KeyError, IndexError, ValueError) as e:
            raise Problems(
                (key, budget.reference, f"only {{seed}} may stand in the path ({e!r})")
            ) from None
        if not (path / "summary.json").is_file():
            raise Problems(
                (
                    key,
                    budget.reference,
                    f"{path} is not a finished run directory (no summary.json); expected "
                    "the finished unregularized run of this task and seed, e.g. "
                    "runs/NAME-vanilla-seed{seed}",
                )
            )
        column = "train_loss" if budget.constrain == "task_loss" else f"train_{task.metric.name}"
        lines = (path / "metrics.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
        points = [(row["epoch"], row[column]) for row in rows if row.get(column) is not None]
        if not points:
            raise Problems(
                (
                    key,
                    budget.reference,
                    f"{path}/metrics.jsonl has no '{column}' column: is it a run of the "
                    f"{self.task.name} task?",
                )
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
