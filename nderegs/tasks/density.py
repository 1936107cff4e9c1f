"""Density estimation with a continuous normalizing flow (FFJORD; the benchmark of
RNODE and TayNODE): maximum likelihood, metric the test negative log-likelihood."""

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..layers import CNF
from ..models import ConcatSquashMLP
from ..regularization import AbstractRegularizer, Regularization
from .base import AbstractTask, Arrays, Evaluation
from .density_figures import density_figure, density_grid, PLOT_BOX
from .metric import Metric, NLL

#: Builds the flow around its vector field, e.g. `functools.partial(CNF, rtol=1e-5)`.
MakeCNF = Callable[..., CNF]


class DensityTask(AbstractTask):
    r"""Fit a density with a CNF by maximum likelihood: the loss is the mean negative
    log-likelihood −(1/n) Σ log p(x_i) of a batch (plus the method's terms), the metric
    the test NLL in nats (lower is better), with the exact trace at evaluation.

    The field is FFJORD's concat-squash MLP (`depth` hidden layers of `width` units).
    `write_figures` draws the data, the learned density (2-D: heat map on
    [−4.5, 4.5]²) and samples of the flow.
    """

    metric: ClassVar[Metric] = NLL
    equation: ClassVar[Literal["ode", "sde"]] = "ode"
    dim: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    activation: Callable = eqx.field(static=True)
    make_cnf: MakeCNF = eqx.field(static=True)
    regularization: Regularization
    rejected_components: ClassVar[dict[type[AbstractRegularizer], str]] = {}

    def init_model(self, key) -> CNF:
        field = ConcatSquashMLP(
            self.dim, self.width, self.depth, activation=self.activation, key=key
        )
        return self.make_cnf(field, dim=self.dim)

    def loss(self, model, batch, key, coefficients):
        (x,) = batch
        log_p, h = model.log_prob(x, key=key)
        nll = -jnp.mean(log_p)
        total, aux = self.regularization.penalize(nll, h, x.shape[0], coefficients)
        aux.update(task_loss=nll, metric=nll)
        return total, aux

    def evaluate(self, model, batch) -> Evaluation:
        (x,) = batch
        log_p, h = model.log_prob(x)
        return Evaluation.of(-jnp.sum(log_p), jnp.asarray(x.shape[0], jnp.float32), h)

    def loss_coefficients(self, epoch: int) -> dict[str, float]:
        return {}

    def write_figures(self, model, arrays: Arrays, directory: Path) -> list[Path]:
        """`density.png` (data | learned density | samples) and, for 2-D data,
        `density.npz` (the log-density on the plotting grid, for side-by-side figures)."""
        evaluation = self.evaluation_model(model)
        (x_test,) = arrays.test
        samples = np.asarray(
            eqx.filter_jit(lambda m, k: m.sample(k, 2000, dtype=x_test.dtype))(
                evaluation, jax.random.key(0)
            )
        )
        written = []
        grid = None
        if self.dim == 2:
            grid = density_grid(evaluation, x_test.dtype)
            np.savez_compressed(directory / "density.npz", box=PLOT_BOX, log_density=grid)
            written.append(directory / "density.npz")
        figure = density_figure(x_test[:2000], samples, grid)
        figure.savefig(directory / "density.png", dpi=110)
        written.append(directory / "density.png")
        return written
