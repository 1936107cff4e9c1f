"""Paper 1's spiral SDE: fit the per-time mean and variance of an SDE's paths."""

from typing import ClassVar, Literal

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from ..layers import MakeSDE
from ..models import SpiralSDE
from ..regularization import AbstractRegularizer, Regularization
from .base import AbstractTask, Evaluation, evaluation_key
from .metric import Metric, MSE


class SpiralSDETask(AbstractTask):
    """Each training step samples `num_trajectories` paths (one system) from `y0`; the
    loss and the metric are the moment MSE: the mean over times and coordinates of
    (mean error)² plus that of (variance error)², against the moments of an independent
    set of true paths, from `predict_trajectories` model paths at evaluation."""

    metric: ClassVar[Metric] = MSE
    equation: ClassVar[Literal["ode", "sde"]] = "sde"
    times: Array
    y0: Array
    num_channels: int = eqx.field(static=True)
    vf_width: int = eqx.field(static=True)
    num_trajectories: int = eqx.field(static=True)
    predict_trajectories: int = eqx.field(static=True)
    make_sde: MakeSDE = eqx.field(static=True)
    regularization: Regularization

    rejected_components: ClassVar[dict[type[AbstractRegularizer], str]] = {}

    def init_model(self, key) -> SpiralSDE:
        return SpiralSDE(self.num_channels, self.vf_width, make_sde=self.make_sde, key=key)

    def _moment_error(self, mean, var, batch):
        target_mean, target_var = batch[0][0], batch[1][0]
        return jnp.mean((mean - target_mean) ** 2) + jnp.mean((var - target_var) ** 2)

    def loss(self, model, batch, key, coefficients):
        mean, var, h = model(self.y0, self.times, key=key, num_trajectories=self.num_trajectories)
        task_loss = self._moment_error(mean, var, batch)
        total, aux = self.regularization.penalize(task_loss, h, 1, coefficients)
        aux.update(task_loss=task_loss, metric=task_loss)
        return total, aux

    def evaluate(self, model, batch) -> Evaluation:
        mean, var, h = model(
            self.y0, self.times, key=evaluation_key(), num_trajectories=self.predict_trajectories
        )
        return Evaluation.of(self._moment_error(mean, var, batch), jnp.asarray(1.0), h)

    def loss_coefficients(self, epoch: int) -> dict[str, float]:
        return {}

    def write_figures(self, model, arrays, directory) -> list:
        return []

    def summary_figures(self, model, arrays, test_metric) -> dict:
        return {}
