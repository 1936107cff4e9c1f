"""Interpolation of irregularly sampled series with a latent ODE (Rubanova et al. 2019;
paper 1's PhysioNet task)."""

from typing import ClassVar, Literal

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from ..layers import MakeNode
from ..models import Activation, activation, gaussian_kl, LatentODE
from ..regularization import AbstractRegularizer, Regularization, Steer
from .base import AbstractTask, Evaluation
from .metric import Metric, MSE


class LatentODETask(AbstractTask):
    r"""Reconstruct the observed points of each series from its posterior latent path.

    Loss per series: the Gaussian negative log-likelihood per observed point,
    ½‖m ⊙ (x̂ − x)‖²/(σ² n) + ½ log 2πσ², plus β(epoch)·KL(q(z₀) ‖ N(0, I))/n with n the
    number of observed points and β warming up linearly from 1/`kl_anneal_epochs` to 1
    (1 throughout when 0). The metric is the MSE over observed points.
    """

    metric: ClassVar[Metric] = MSE
    equation: ClassVar[Literal["ode", "sde"]] = "ode"
    times: Array
    num_channels: int = eqx.field(static=True)
    latent_size: int = eqx.field(static=True)
    encoder_hidden: int = eqx.field(static=True)
    vf_width: int = eqx.field(static=True)
    vf_depth: int = eqx.field(static=True)
    decoder_width: int = eqx.field(static=True)
    activation: Activation = eqx.field(static=True)
    obs_std: float = eqx.field(static=True)
    kl_anneal_epochs: int = eqx.field(static=True)
    make_node: MakeNode = eqx.field(static=True)
    regularization: Regularization

    rejected_components: ClassVar[dict[type[AbstractRegularizer], str]] = {
        Steer: "changes the end time of the solve, but the latent ODE must reach its data times"
    }

    def __check_init__(self):
        activation(self.activation)  # a clear error for a function or an unknown name

    def init_model(self, key) -> LatentODE:
        model = LatentODE(
            self.num_channels,
            latent_size=self.latent_size,
            encoder_hidden=self.encoder_hidden,
            vf_width=self.vf_width,
            vf_depth=self.vf_depth,
            decoder_width=self.decoder_width,
            activation=activation(self.activation),
            make_node=self.make_node,
            key=key,
        )
        t0, t1 = model.node.options.t0, model.node.options.t1
        first, last = float(self.times[0]), float(self.times[-1])
        if not (t0 <= first and last <= t1):
            raise ValueError(
                f"The data's times lie in [{first:.3g}, {last:.3g}] but the ODE runs on "
                f"[solver.t0, solver.t1] = [{t0}, {t1}]; they must lie inside it."
            )
        return model

    def _squared_errors(self, prediction, values, mask):
        per_series = jnp.sum(mask * (prediction - values) ** 2, axis=(1, 2))
        return per_series, jnp.sum(mask, axis=(1, 2))

    def loss(self, model, batch, key, coefficients):
        values, mask = batch
        prediction, mean, log_std, h = model(values, mask, self.times, key=key)
        sq, counts = self._squared_errors(prediction, values, mask)
        var = self.obs_std**2
        nll = 0.5 * (sq / var) / counts + 0.5 * jnp.log(2 * jnp.pi * var)
        kl = gaussian_kl(mean, log_std) / counts
        task_loss = jnp.mean(nll + coefficients["kl"] * kl)
        total, aux = self.regularization.penalize(task_loss, h, values.shape[0], coefficients)
        aux.update(task_loss=task_loss, metric=jnp.sum(sq) / jnp.sum(counts), kl=jnp.mean(kl))
        return total, aux

    def evaluate(self, model, batch) -> Evaluation:
        values, mask = batch
        prediction, _, _, h = model(values, mask, self.times, sample=False)
        sq, counts = self._squared_errors(prediction, values, mask)
        return Evaluation.of(jnp.sum(sq), jnp.sum(counts), h)

    def loss_coefficients(self, epoch: int) -> dict[str, float]:
        anneal = self.kl_anneal_epochs
        return {"kl": min(1.0, (epoch + 1) / anneal) if anneal else 1.0}

    def write_figures(self, model, arrays, directory) -> list:
        return []

    def summary_figures(self, model, arrays, test_metric) -> dict:
        return {}
