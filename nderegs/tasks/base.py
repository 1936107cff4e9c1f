"""The task interface: a model for a data set, its loss and its evaluation metric."""

import abc
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray
import numpy as np

from ..core import Heuristics
from ..regularization import AbstractRegularizer, Regularization
from .metric import Metric


class Arrays(NamedTuple):
    """The arrays of a task's training and test sets (numpy; batched along axis 0), and
    where they come from in words (`ClassificationData.source`; "" if not said)."""

    train: tuple[np.ndarray, ...]
    test: tuple[np.ndarray, ...]
    source: str = ""


class Evaluation(NamedTuple):
    """What `AbstractTask.evaluate` returns for a batch: the metric summed over the batch
    (so means over a data set are exact whatever the batch sizes), the count it is a sum
    over, and the solve's NFE and success."""

    metric_sum: Array
    count: Array
    nfe: Array | None
    successful: Array

    @classmethod
    def of(cls, metric_sum: Array, count: Array, h: Heuristics) -> "Evaluation":
        return cls(jnp.asarray(metric_sum), jnp.asarray(count), h.nfe, h.successful)


class EvaluableModel(Protocol):
    def for_evaluation(self) -> Any: ...


class AbstractTask(eqx.Module):
    """A training task: how to initialise its model, its training loss and its
    evaluation.

    `loss(model, batch, key, coefficients)` returns the scalar training loss (the task's
    loss plus the method's weighted terms, see [`nderegs.regularization.Regularization`][])
    and an aux dict with at least `metric`, `task_loss`, `nfe` and `successful`;
    `coefficients` maps each coefficient name to its value at this step: the method's
    and the task's own (`loss_coefficients`, e.g. the latent ODE's KL warm-up).

    Concrete tasks are final; a new task implements the abstract methods below and is
    listed in `nderegs.config.tasks`.
    """

    #: The evaluation metric: its name in the run's files, and how reports show it
    #: (found again from a summary's name by `metric_named`).
    metric: eqx.AbstractClassVar[Metric]
    #: The regularization method the task trains with.
    regularization: eqx.AbstractVar[Regularization]
    #: The kind of equation the model solves: an SDE rejects the components that
    #: declare themselves `ode_only`.
    equation: eqx.AbstractClassVar[Literal["ode", "sde"]]
    #: Method components (their classes) the task cannot train with -> why (besides the ODE-only ones
    #: of an SDE task).
    rejected_components: eqx.AbstractClassVar[dict[type[AbstractRegularizer], str]]

    @classmethod
    def rejects(cls, component: AbstractRegularizer) -> str | None:
        """Why the task cannot train with `component` (None: it can)."""
        reason = cls.rejected_components.get(type(component))
        return component.ode_only if reason is None and cls.equation == "sde" else reason

    def __check_init__(self):
        reasons = []
        for component in self.regularization.regularizers:
            reason = self.rejects(component)
            if reason is not None:
                reasons.append(f"'{component.name}' {reason}")
        if reasons:
            raise ValueError(f"{type(self).__name__} cannot train with {'; '.join(reasons)}.")

    @abc.abstractmethod
    def init_model(self, key: PRNGKeyArray) -> eqx.Module:
        """A freshly initialised model."""

    @abc.abstractmethod
    def loss(
        self,
        model: Any,
        batch: tuple[Array, ...],
        key: PRNGKeyArray,
        coefficients: dict[str, Array],
    ) -> tuple[Array, dict[str, Any]]:
        """Training loss and aux for one batch."""

    @abc.abstractmethod
    def evaluate(self, model: Any, batch: tuple[Array, ...]) -> Evaluation:
        """The metric of one test batch (with the model as used at test time)."""

    @abc.abstractmethod
    def loss_coefficients(self, epoch: int) -> dict[str, float]:
        """The task's own loss weights at `epoch` (0-based), besides the method's."""

    @abc.abstractmethod
    def write_figures(self, model: Any, arrays: Arrays, directory: Path) -> list[Path]:
        """Figures of the trained model, written into the run directory `directory`;
        returns the files written ([] if the task draws none)."""

    @abc.abstractmethod
    def summary_figures(self, model: Any, arrays: Arrays, test_metric: float) -> dict[str, Any]:
        """The task's own figures of the trained model for `summary.json` (besides
        the metric, `test_metric` on the test set); {} if it has none."""

    def evaluation_model(self, model: Any) -> Any:
        """The model as used at test time: no local sampling, no integrals and no
        stiffness estimate in its solve (STEER is off without a key)."""
        evaluable: EvaluableModel = model
        return evaluable.for_evaluation()


def task_metrics() -> dict[str, Metric]:
    """Name -> metric of every task class defined (subclasses of `AbstractTask`, each
    metric declared once, by the class that owns it), so that a new task's metric is
    found without being listed anywhere. Raises `ValueError` if two tasks declare
    different metrics under one name."""
    metrics: dict[str, Metric] = {}
    classes = [AbstractTask]
    while classes:
        cls = classes.pop()
        classes += cls.__subclasses__()
        # The metric the class declares itself (a subclass's inherited one is its parent's).
        metric = vars(cls).get("metric")
        if not isinstance(metric, Metric):
            continue
        if metrics.setdefault(metric.name, metric) != metric:
            raise ValueError(
                f"two tasks declare different metrics named {metric.name!r}: "
                f"{metrics[metric.name]} and {metric} ({cls.__name__})"
            )
    return metrics


def metric_named(name: str | None) -> Metric:
    """The metric a run's `summary.json` names (its "metric"): the task's that declares
    it (`task_metrics`). A name no task declares gets `Metric.generic`, and so does
    None (no summary to read a name from, e.g. every run of a comparison failed), as
    "metric"."""
    generic = Metric.generic(name or "metric")
    return task_metrics().get(generic.name, generic)


def evaluation_key() -> PRNGKeyArray:
    """Evaluation of SDE models samples fixed Brownian paths, so its numbers are
    reproducible."""
    return jax.random.key(12345)


def count_parameters(model: Any) -> int:
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    return int(sum(np.prod(x.shape) for x in leaves))
