"""Tasks: a data set, a model built for it, its loss and its evaluation metric.

A task's `loss(model, batch, key, weights)` returns the scalar training loss and an
aux dict; `evaluate(model, batch)` returns sums over the batch (so means over a data
set are exact whatever the batch sizes) and the solve's NFE.
"""

import dataclasses
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..config import ExperimentConfig
from ..data import load_classification, load_time_series
from ..models import activation, gaussian_kl, LatentODE, NODEClassifier
from .objectives import Objective


SOLVERS: dict[str, Callable[[], diffrax.AbstractSolver]] = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "bosh3": diffrax.Bosh3,
    "heun": diffrax.Heun,
}
ADJOINTS: dict[str, Callable[[], diffrax.AbstractAdjoint]] = {
    "recursive_checkpoint": diffrax.RecursiveCheckpointAdjoint,
    "direct": diffrax.DirectAdjoint,
    "backsolve": diffrax.BacksolveAdjoint,
}


def node_options(config: ExperimentConfig, objective: Objective) -> dict:
    """Keyword arguments of `NeuralODE` from the solver section and the method."""
    s = config.solver
    if objective.local is None and s.adjoint == "backsolve" and objective.components & {
        "error",
        "stiffness",
    }:
        raise ValueError(
            "The global error/stiffness regularizers differentiate through the solver's "
            "steps, which solver.adjoint=backsolve cannot do. Use "
            "solver.adjoint=recursive_checkpoint (or direct), or a local method "
            "(local-error, local-stiffness) that works with any adjoint."
        )
    return dict(
        t0=s.t0,
        t1=s.t1,
        solver=SOLVERS[s.name](),
        rtol=s.rtol,
        atol=s.atol,
        dt0=s.dt0,
        adjoint=ADJOINTS[s.adjoint](),
        max_steps=s.max_steps,
        local=objective.local,
        stiffness=objective.stiffness,
        throw=False,
        integrals=objective.integrals,
        steer=objective.steer,
    )


def _regularized(task_loss, h, objective: Objective, weights: dict, batch_size: int):
    terms = objective.terms(h, batch_size)
    names = objective.coefficient_names()
    total = task_loss
    for component, value in terms.items():
        total = total + weights[names[component]] * value
    aux = {f"reg_{c}": v for c, v in terms.items()}
    aux.update(
        nfe=h.nfe,
        error=h.error,
        successful=h.successful,
    )
    if h.stiffness is not None:
        aux["stiffness"] = h.stiffness
    return total, aux


class ClassificationTask:
    """Classify digits / MNIST / MNIST-1D with the papers' NODE classifier."""

    metric = "accuracy"

    def __init__(self, config: ExperimentConfig, objective: Objective):
        d = config.data
        kwargs = {}
        if d.name == "digits":
            kwargs["test_fraction"] = d.test_fraction
        if d.name == "mnist1d" and d.num_samples is not None:
            kwargs["num_samples"] = d.num_samples
        self.data = load_classification(d.name, path=d.path, seed=config.seed, **kwargs)
        x, y = self.data.x_train, self.data.y_train
        if d.subset is not None:
            x, y = x[: d.subset], y[: d.subset]
        self.train_arrays = (x, y)
        self.test_arrays = (self.data.x_test, self.data.y_test)
        self.config = config
        self.objective = objective

    def init_model(self, key) -> NODEClassifier:
        m = self.config.model
        return NODEClassifier(
            self.data.num_features,
            self.data.num_classes,
            hidden_size=m.hidden_size,
            vf_width=m.vf_width,
            vf_depth=m.vf_depth,
            activation=activation(m.activation),
            key=key,
            **node_options(self.config, self.objective),
        )

    def loss(self, model, batch, key, weights):
        x, y = batch
        logits, h = model(x, key=key)
        task_loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
        total, aux = _regularized(task_loss, h, self.objective, weights, y.shape[0])
        aux.update(task_loss=task_loss, metric=jnp.mean(jnp.argmax(logits, -1) == y))
        return total, aux

    def evaluate(self, model, batch):
        x, y = batch
        logits, h = model(x)
        return dict(
            metric_sum=jnp.sum(jnp.argmax(logits, -1) == y).astype(jnp.float32),
            count=jnp.asarray(y.shape[0], jnp.float32),
            nfe=h.nfe,
            successful=h.successful,
        )


class LatentODETask:
    """Reconstruct irregularly sampled series (interpolation) with a latent ODE;
    the metric is the MSE over observed points."""

    metric = "mse"

    def __init__(self, config: ExperimentConfig, objective: Objective):
        d = config.data
        kwargs = dict(test_fraction=d.test_fraction)
        if d.num_samples is not None and d.name in ("spirals", "irregular"):
            kwargs["num_series"] = d.num_samples
        self.data = load_time_series(d.name, path=d.path, seed=config.seed, **kwargs)
        values, mask = self.data.values_train, self.data.mask_train
        if d.subset is not None:
            values, mask = values[: d.subset], mask[: d.subset]
        self.train_arrays = (values, mask)
        self.test_arrays = (self.data.values_test, self.data.mask_test)
        self.times = jnp.asarray(self.data.times)
        self.config = config
        self.objective = objective
        s = config.solver
        if not (s.t0 <= float(self.data.times[0]) and float(self.data.times[-1]) <= s.t1):
            raise ValueError(
                f"The data's times lie in [{self.data.times[0]:.3g}, "
                f"{self.data.times[-1]:.3g}] but the ODE runs on [solver.t0, solver.t1] "
                f"= [{s.t0}, {s.t1}]; they must lie inside it."
            )

    def init_model(self, key) -> LatentODE:
        m = self.config.model
        return LatentODE(
            self.data.num_channels,
            latent_size=m.latent_size,
            encoder_hidden=m.encoder_hidden,
            vf_width=m.vf_width,
            vf_depth=m.vf_depth,
            decoder_width=m.decoder_width,
            activation=activation(m.activation),
            key=key,
            **node_options(self.config, self.objective),
        )

    def _squared_errors(self, prediction, values, mask):
        per_series = jnp.sum(mask * (prediction - values) ** 2, axis=(1, 2))
        return per_series, jnp.sum(mask, axis=(1, 2))

    def loss(self, model, batch, key, weights):
        values, mask = batch
        prediction, mean, log_std, h = model(values, mask, self.times, key=key)
        sq, counts = self._squared_errors(prediction, values, mask)
        var = self.config.model.obs_std**2
        # Gaussian negative log-likelihood per observed point, averaged per series.
        nll = 0.5 * (sq / var) / counts + 0.5 * jnp.log(2 * jnp.pi * var)
        kl = gaussian_kl(mean, log_std) / counts
        task_loss = jnp.mean(nll + weights["kl"] * kl)
        total, aux = _regularized(task_loss, h, self.objective, weights, values.shape[0])
        aux.update(task_loss=task_loss, metric=jnp.sum(sq) / jnp.sum(counts), kl=jnp.mean(kl))
        return total, aux

    def evaluate(self, model, batch):
        values, mask = batch
        prediction, _, _, h = model(values, mask, self.times, sample=False)
        sq, counts = self._squared_errors(prediction, values, mask)
        return dict(
            metric_sum=jnp.sum(sq),
            count=jnp.sum(counts),
            nfe=h.nfe,
            successful=h.successful,
        )


def make_task(config: ExperimentConfig, objective: Objective):
    if config.task == "classifier":
        return ClassificationTask(config, objective)
    return LatentODETask(config, objective)


def evaluation_model(model):
    """The model as used at test time: no local sampling and no integrals in its solve
    (STEER is off without a key)."""
    node = dataclasses.replace(model.node, local=None, integrals=())
    return eqx.tree_at(lambda m: m.node, model, node)


def count_parameters(model) -> int:
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    return int(sum(np.prod(x.shape) for x in leaves))
