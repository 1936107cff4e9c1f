"""Density estimation with a continuous normalizing flow (FFJORD; the benchmark of
RNODE and TayNODE), trained by maximum likelihood or by flow matching; metric the test
negative log-likelihood, with the sampling solve's NFE and the samples' energy distance
to the test set beside it."""

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array
import numpy as np

from ..layers import CNF
from ..layers.flow_matching import Coupling, flow_matching_loss
from ..models import Activation, activation, ConcatSquashMLP
from ..regularization import AbstractRegularizer, Regularization
from .base import AbstractTask, Arrays, Evaluation
from .density_figures import density_figure, density_grid, PLOT_BOX
from .metric import Metric, NLL

#: Builds the flow around its vector field, e.g. `functools.partial(CNF, rtol=1e-5)`.
MakeCNF = Callable[..., CNF]
Training = Literal["maximum_likelihood", "flow_matching"]

#: Samples drawn for the sample figures of a finished run (sampling NFE, energy distance).
SAMPLES = 1000


def energy_distance(x: Array, y: Array) -> Array:
    r"""The energy distance between the samples `x` `(n, d)` and `y` `(m, d)`,
    $2\,E\lVert X - Y\rVert - E\lVert X - X'\rVert - E\lVert Y - Y'\rVert$ (within-sample
    means over distinct pairs): zero in expectation exactly when the laws agree
    (Székely & Rizzo 2013)."""

    def mean_distance(a, b, distinct: bool):
        squared = jnp.sum(a**2, -1)[:, None] + jnp.sum(b**2, -1)[None] - 2 * a @ b.T
        distances = jnp.sqrt(jnp.maximum(squared, 0.0))
        if distinct:
            n = a.shape[0]
            return (jnp.sum(distances) - jnp.sum(jnp.diag(distances))) / (n * (n - 1))
        return jnp.mean(distances)

    return 2 * mean_distance(x, y, False) - mean_distance(x, x, True) - mean_distance(y, y, True)


class DensityTask(AbstractTask):
    r"""Fit a density with a CNF. With `training="maximum_likelihood"` (FFJORD) the
    loss is the mean negative log-likelihood −(1/n) Σ log p(x_i) of a batch, and the
    method's terms are those of that solve. With `training="flow_matching"` the loss is
    the conditional flow-matching loss (`nderegs.layers.flow_matching`, with the
    `coupling`), which solves nothing; a method's terms are then those of the sampling
    solve (base → data, the flow alone: `CNF.transport`) of one batch of base samples,
    so that fine-tuning a flow-matching model with the error regularizer makes its
    sampling cheap. A flow-matching step computes no likelihood: its `train_nll` is not
    recorded (null).

    The metric is the test NLL in nats per sample (lower is better), exact trace, plus
    `nll_offset` (the data's preprocessing, see `DensityData.nll_offset`). A finished
    run's summary adds the NFE of sampling `SAMPLES` points, their energy distance to
    the test set and the NLL per dimension (`summary_figures`).

    The field is FFJORD's concat-squash MLP (`depth` hidden layers of `width` units).
    `write_figures` draws the data, the learned density (2-D: heat map on
    [−4.5, 4.5]²) and samples of the flow.
    """

    metric: ClassVar[Metric] = NLL
    equation: ClassVar[Literal["ode", "sde"]] = "ode"
    dim: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    activation: Activation = eqx.field(static=True)
    make_cnf: MakeCNF = eqx.field(static=True)
    regularization: Regularization
    training: Training = eqx.field(static=True, default="maximum_likelihood")
    coupling: Coupling = eqx.field(static=True, default="independent")
    nll_offset: float = eqx.field(static=True, default=0.0)
    rejected_components: ClassVar[dict[type[AbstractRegularizer], str]] = {}

    def __check_init__(self):
        activation(self.activation)  # a clear error for a function or an unknown name

    def init_model(self, key) -> CNF:
        field = ConcatSquashMLP(
            self.dim, self.width, self.depth, activation=activation(self.activation), key=key
        )
        return self.make_cnf(field, dim=self.dim)

    def loss(self, model, batch, key, coefficients):
        (x,) = batch
        if self.training == "maximum_likelihood":
            log_p, h = model.log_prob(x, key=key)
            nll = -jnp.mean(log_p)
            total, aux = self.regularization.penalize(nll, h, x.shape[0], coefficients)
            # The metric in the data's own units, as evaluation reports it.
            aux.update(task_loss=nll, metric=nll + jnp.asarray(self.nll_offset, nll.dtype))
            return total, aux
        match_key, base_key, solve_key = jax.random.split(key, 3)
        matching = flow_matching_loss(model, x, match_key, coupling=self.coupling)
        if self.regularization.regularizers:
            base = jax.random.normal(base_key, x.shape, x.dtype)
            _, h = model.transport(base, reverse=True, key=solve_key)
            total, aux = self.regularization.penalize(matching, h, x.shape[0], coefficients)
        else:  # no solve at all
            total, aux = matching, dict(nfe=None, successful=jnp.asarray(True))
        aux.update(task_loss=matching, metric=jnp.asarray(jnp.nan, matching.dtype))
        return total, aux

    def evaluate(self, model, batch) -> Evaluation:
        (x,) = batch
        log_p, h = model.log_prob(x)
        count = jnp.asarray(x.shape[0], jnp.float32)
        nll = -jnp.sum(log_p) + jnp.asarray(self.nll_offset, log_p.dtype) * count
        return Evaluation.of(nll, count, h)

    def summary_figures(self, model, arrays: Arrays, test_metric: float) -> dict[str, float | None]:
        """The sampling solve's NFE for `SAMPLES` base points (the flow alone, at the
        evaluation settings), the energy distance of those samples to (up to
        `SAMPLES` points of) the test set (both None where the sampling solve fails or
        the test set has one point), and the test NLL per dimension."""
        (x_test,) = arrays.test
        reference = jnp.asarray(x_test[:SAMPLES])

        @eqx.filter_jit
        def sample_figures(cnf: CNF, key):
            base = jax.random.normal(key, (SAMPLES, self.dim), reference.dtype)
            samples, h = cnf.transport(base, reverse=True)
            return h.nfe, energy_distance(samples, reference), h.successful

        per_dim = {"test_nll_per_dim": test_metric / self.dim}
        if reference.shape[0] < 2:  # the energy distance needs two test points
            return {"sample_nfe": None, "sample_energy_distance": None, **per_dim}
        nfe, distance, ok = sample_figures(self.evaluation_model(model), jax.random.key(0))
        if not bool(ok):  # a failed sampling solve: its samples and count mean nothing
            return {"sample_nfe": None, "sample_energy_distance": None, **per_dim}
        return {
            "sample_nfe": None if nfe is None else float(nfe),
            "sample_energy_distance": float(distance),
            **per_dim,
        }

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
