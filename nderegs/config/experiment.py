"""`ExperimentConfig`: one experiment, as one YAML file describes it."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from ..tasks import AbstractTask, Arrays
from ..tracking import TRACKERS
from .base import Bool, config_error_of, Int, invalid, Problems, Section, Str
from .optimizers import OptimizerConfig
from .parallel import ParallelConfig
from .regularization import method_problem, parse_method, RegularizationConfig
from .schedules import ConstantSchedule
from .solvers import solver_names, SolverConfig
from .tasks import Classifier, TaskConfig


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
    method: Str = "vanilla"
    task: TaskConfig = Field(default_factory=Classifier)
    solver: SolverConfig = Field(default_factory=lambda: _default_solver())
    regularization: RegularizationConfig = Field(default_factory=RegularizationConfig)
    optim: OptimizerConfig = Field(default_factory=lambda: _default_optimizer())
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
        components = self.components
        if not self.solver.adjoint.differentiates_through_solver and components & {
            "error",
            "stiffness",
        }:
            problems.append(
                (
                    "solver.adjoint.name",
                    self.solver.adjoint.name,
                    "the global error/stiffness regularizers differentiate through the "
                    "solver's steps, which this adjoint cannot do. Use solver.adjoint="
                    "recursive_checkpoint (or direct), or a local method (local-error, "
                    "local-stiffness) that works with any adjoint",
                )
            )
        local = components & {"local-error", "local-error-biased", "local-stiffness"}
        if (
            local
            and self.regularization.local_gradient == "trajectory"
            and self.regularization.sampling(components) == "biased"
            and not self.solver.adjoint.differentiates_through_solver
        ):
            problems.append(
                (
                    "regularization.local_gradient",
                    "trajectory",
                    "with biased sampling the sampled step's start state is known only "
                    "after the solve, so its gradient must come through the solver, which "
                    f"solver.adjoint.name={self.solver.adjoint.name} cannot give. Use "
                    "regularization.local_sampling=unbiased (method local-error), "
                    "local_gradient=step, or solver.adjoint=recursive_checkpoint",
                )
            )
        for component, reason in self.task.task_class.rejected_components.items():
            if component in components:
                problems.append(
                    (
                        "method",
                        self.method,
                        f"the {self.task.name} task cannot train with '{component}': it {reason}",
                    )
                )
        if "steer" in components:
            span = abs(self.solver.t1 - self.solver.t0)
            b = self.regularization.steer_b
            if not 0 < b < span:
                problems.append(
                    (
                        "regularization.steer_b",
                        b,
                        f"method 'steer' needs 0 < regularization.steer_b < |solver.t1 - "
                        f"solver.t0| = {span}",
                    )
                )
        if problems:
            raise Problems(*problems)
        return self

    def check_trains_something(self) -> None:
        """Raise `ConfigError` when a method component would be a silent no-op: all its
        coefficients 0, so the run would train exactly like vanilla. Checked when a run
        starts (not when a config is read, so old run directories still load)."""
        problems = []
        for component in self.regularization.build(self.method).regularizers:
            coefficients = sorted(set(component.coefficients().values()))
            schedules = [self.regularization.schedule(c) for c in coefficients]
            if coefficients and all(
                isinstance(s, ConstantSchedule) and s.start == 0 for s in schedules
            ):
                keys = " and ".join(f"regularization.{c}.start" for c in coefficients)
                problems.append(
                    invalid(
                        f"regularization.{coefficients[0]}.start",
                        0.0,
                        f"method component '{component.name}' is weighed by {keys}, and with "
                        "0 it would train exactly like vanilla. Set it, e.g. "
                        f"regularization.{coefficients[0]}.start=0.01",
                    )
                )
        if problems:
            raise config_error_of(problems)

    @property
    def components(self) -> frozenset[str]:
        """The set of method components, e.g. ``frozenset({"error", "stiffness"})``."""
        return parse_method(self.method)

    def build(self) -> tuple[AbstractTask, Arrays]:
        """The task, with the method's `Regularization`, and its data."""
        regularization = self.regularization.build(self.method)
        return self.task.build(self.seed, regularization, self.solver)


def _default_solver():
    from .solvers import Tsit5

    return Tsit5()


def _default_optimizer():
    from .optimizers import Adam

    return Adam()
