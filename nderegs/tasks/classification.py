"""Classification with a neural ODE (the papers' MNIST classifier) or a neural SDE
(paper 1's MNIST SDE): cross-entropy loss, accuracy metric."""

import abc
from typing import Any, ClassVar, Literal

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray
import optax

from ..core import Heuristics
from ..layers import MakeNode, MakeSDE
from ..models import Activation, activation, NODEClassifier, SDEClassifier
from ..regularization import AbstractRegularizer, Regularization
from .base import (
    AbstractTask,
    Evaluation,
    evaluation_key,
)
from .metric import ACCURACY, Metric


class AbstractClassificationTask(AbstractTask):
    """Cross-entropy of the logits; the metric is the accuracy. A concrete task says
    how its model gives logits (`logits`, `key=None` at evaluation)."""

    metric: ClassVar[Metric] = ACCURACY

    @abc.abstractmethod
    def logits(self, model: Any, x: Array, key: PRNGKeyArray | None) -> tuple[Array, Heuristics]:
        """Logits and the heuristics of the solve; `key` is None at evaluation."""

    def loss(self, model, batch, key, coefficients):
        x, y = batch
        logits, h = self.logits(model, x, key)
        task_loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
        total, aux = self.regularization.penalize(task_loss, h, y.shape[0], coefficients)
        aux.update(task_loss=task_loss, metric=jnp.mean(jnp.argmax(logits, -1) == y))
        return total, aux

    def evaluate(self, model, batch) -> Evaluation:
        x, y = batch
        logits, h = self.logits(model, x, None)
        correct = jnp.sum(jnp.argmax(logits, -1) == y).astype(jnp.float32)
        return Evaluation.of(correct, jnp.asarray(y.shape[0], jnp.float32), h)

    def loss_coefficients(self, epoch: int) -> dict[str, float]:
        return {}

    def write_figures(self, model, arrays, directory) -> list:
        return []

    def summary_figures(self, model, arrays, test_metric) -> dict:
        return {}


class ClassifierTask(AbstractClassificationTask):
    """x → tanh(W₁[x; t₀]) → neural ODE → W₂ z(t₁) → logits (Pal et al. 2021, 2023)."""

    num_features: int = eqx.field(static=True)
    num_classes: int = eqx.field(static=True)
    hidden_size: int = eqx.field(static=True)
    vf_width: int = eqx.field(static=True)
    vf_depth: int = eqx.field(static=True)
    activation: Activation = eqx.field(static=True)
    field_output_activation: Activation = eqx.field(static=True)
    make_node: MakeNode = eqx.field(static=True)
    regularization: Regularization
    equation: ClassVar[Literal["ode", "sde"]] = "ode"
    rejected_components: ClassVar[dict[type[AbstractRegularizer], str]] = {}

    def __check_init__(self):
        for name in (self.activation, self.field_output_activation):
            activation(name)  # a clear error for a function or an unknown name

    def init_model(self, key) -> NODEClassifier:
        return NODEClassifier(
            self.num_features,
            self.num_classes,
            hidden_size=self.hidden_size,
            vf_width=self.vf_width,
            vf_depth=self.vf_depth,
            activation=activation(self.activation),
            field_output_activation=activation(self.field_output_activation),
            make_node=self.make_node,
            key=key,
        )

    def logits(self, model, x, key):
        return model(x, key=key)


class SDEClassifierTask(AbstractClassificationTask):
    """Paper 1's neural SDE classifier: `num_trajectories` sampled paths per input in
    training; at evaluation the logits are averaged over `predict_trajectories` paths
    drawn with a fixed key (so evaluation is deterministic)."""

    num_features: int = eqx.field(static=True)
    num_classes: int = eqx.field(static=True)
    hidden_size: int = eqx.field(static=True)
    vf_width: int = eqx.field(static=True)
    vf_depth: int = eqx.field(static=True)
    num_trajectories: int = eqx.field(static=True)
    predict_trajectories: int = eqx.field(static=True)
    make_sde: MakeSDE = eqx.field(static=True)
    regularization: Regularization
    equation: ClassVar[Literal["ode", "sde"]] = "sde"
    rejected_components: ClassVar[dict[type[AbstractRegularizer], str]] = {}

    def init_model(self, key) -> SDEClassifier:
        return SDEClassifier(
            self.num_features,
            self.num_classes,
            hidden_size=self.hidden_size,
            vf_width=self.vf_width,
            vf_depth=self.vf_depth,
            make_sde=self.make_sde,
            key=key,
        )

    def logits(self, model, x, key):
        if key is None:
            return model(x, key=evaluation_key(), num_trajectories=self.predict_trajectories)
        return model(x, key=key, num_trajectories=self.num_trajectories)
