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
from ..data import load_classification, load_time_series, make_spiral_sde
from ..models import activation, gaussian_kl, LatentODE, NODEClassifier, SDEClassifier, SpiralSDE
from .objectives import Objective


SOLVERS: dict[str, Callable[[], diffrax.AbstractSolver]] = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "bosh3": diffrax.Bosh3,
    "heun": diffrax.Heun,
    "spark": diffrax.SPaRK,
    "shark": diffrax.ShARK,
    "sra1": diffrax.SRA1,
}
ODE_SOLVERS = ("tsit5", "dopri5", "dopri8", "bosh3", "heun")
# The SDE models have state-dependent (non-additive) noise.
SDE_SOLVERS = ("spark", "heun")
ADJOINTS: dict[str, Callable[[], diffrax.AbstractAdjoint]] = {
    "recursive_checkpoint": diffrax.RecursiveCheckpointAdjoint,
    "direct": diffrax.DirectAdjoint,
    "backsolve": diffrax.BacksolveAdjoint,
}


def _solve_options(config: ExperimentConfig, objective: Objective, solvers) -> dict:
    s = config.solver
    if s.name not in solvers:
        raise ValueError(
            f"solver.name={s.name!r} does not apply to task {config.task!r}; accepted: "
            f"{', '.join(solvers)}."
        )
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
        pcoeff=s.pcoeff,
        icoeff=s.icoeff,
        dt0=s.dt0,
        adjoint=ADJOINTS[s.adjoint](),
        max_steps=s.max_steps,
        local=objective.local,
        stiffness=objective.stiffness,
        throw=False,
    )


def node_options(config: ExperimentConfig, objective: Objective) -> dict:
    """Keyword arguments of `NeuralODE` from the solver section and the method."""
    return dict(
        _solve_options(config, objective, ODE_SOLVERS),
        integrals=objective.integrals,
        steer=objective.steer,
    )


def sde_options(config: ExperimentConfig, objective: Objective) -> dict:
    """Keyword arguments of `NeuralSDE` from the solver section and the method."""
    unsupported = sorted(objective.components & {"steer", "taynode", "rnode"})
    if unsupported:
        raise ValueError(
            f"method component(s) {', '.join(unsupported)} apply to ODE tasks only; the "
            f"SDE task {config.task!r} accepts vanilla, error, stiffness, local-error, "
            "local-error-biased, local-stiffness."
        )
    return dict(
        _solve_options(config, objective, SDE_SOLVERS),
        brownian_tol=config.solver.brownian_tol,
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


def _evaluation(metric_sum, count, h) -> dict:
    """What `evaluate` returns: the metric summed over the batch, the count it is a sum
    over, and the solve's NFE and success."""
    return dict(metric_sum=metric_sum, count=count, nfe=h.nfe, successful=h.successful)


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

    def logits(self, model, x, key):
        """Logits and heuristics; `key` is None at evaluation."""
        return model(x, key=key)

    def loss(self, model, batch, key, weights):
        x, y = batch
        logits, h = self.logits(model, x, key)
        task_loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
        total, aux = _regularized(task_loss, h, self.objective, weights, y.shape[0])
        aux.update(task_loss=task_loss, metric=jnp.mean(jnp.argmax(logits, -1) == y))
        return total, aux

    def evaluate(self, model, batch):
        x, y = batch
        logits, h = self.logits(model, x, None)
        correct = jnp.sum(jnp.argmax(logits, -1) == y).astype(jnp.float32)
        return _evaluation(correct, jnp.asarray(y.shape[0], jnp.float32), h)


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
        return _evaluation(jnp.sum(sq), jnp.sum(counts), h)


class SDEClassificationTask(ClassificationTask):
    """Classify with paper 1's neural SDE: `model.num_trajectories` sampled paths per
    input in training, logits averaged over `model.predict_trajectories` paths at
    evaluation (a fixed key, so evaluation is deterministic)."""

    def init_model(self, key) -> SDEClassifier:
        m = self.config.model
        return SDEClassifier(
            self.data.num_features,
            self.data.num_classes,
            hidden_size=m.hidden_size,
            vf_width=m.vf_width,
            vf_depth=m.vf_depth,
            key=key,
            **sde_options(self.config, self.objective),
        )

    def logits(self, model, x, key):
        if key is None:  # evaluation: fixed paths, averaged logits
            m = self.config.model.predict_trajectories
            return model(x, key=_evaluation_key(), num_trajectories=m)
        return model(x, key=key, num_trajectories=self.config.model.num_trajectories)


class SpiralSDETask:
    """Fit the spiral SDE's per-time mean and variance (paper 1). Each training step
    samples `model.num_trajectories` paths (one system); the metric is the moment MSE,
    the mean over times and coordinates of (mean error)² plus that of (variance
    error)², against the moments of an independent set of true paths, from
    `model.predict_trajectories` model paths."""

    metric = "mse"

    def __init__(self, config: ExperimentConfig, objective: Objective):
        n = config.data.num_samples or 10_000
        self.data = make_spiral_sde(num_trajectories=n, seed=config.seed)
        d = self.data
        self.train_arrays = (d.mean_train[None], d.var_train[None])
        self.test_arrays = (d.mean_test[None], d.var_test[None])
        self.times = jnp.asarray(d.times)
        self.y0 = jnp.asarray(d.y0)
        self.config = config
        self.objective = objective

    def init_model(self, key) -> SpiralSDE:
        m = self.config.model
        return SpiralSDE(
            self.data.num_channels, m.vf_width, key=key, **sde_options(self.config, self.objective)
        )

    def _moment_error(self, mean, var, batch):
        target_mean, target_var = batch[0][0], batch[1][0]
        return jnp.mean((mean - target_mean) ** 2) + jnp.mean((var - target_var) ** 2)

    def loss(self, model, batch, key, weights):
        mean, var, h = model(
            self.y0, self.times, key=key, num_trajectories=self.config.model.num_trajectories
        )
        task_loss = self._moment_error(mean, var, batch)
        total, aux = _regularized(task_loss, h, self.objective, weights, 1)
        aux.update(task_loss=task_loss, metric=task_loss)
        return total, aux

    def evaluate(self, model, batch):
        mean, var, h = model(
            self.y0, self.times, key=_evaluation_key(),
            num_trajectories=self.config.model.predict_trajectories,
        )
        return _evaluation(self._moment_error(mean, var, batch), jnp.asarray(1.0), h)


def _evaluation_key():
    # Evaluation samples fixed Brownian paths, so its numbers are reproducible.
    return jax.random.key(12345)


TASKS = {
    "classifier": ClassificationTask,
    "latent_ode": LatentODETask,
    "sde_classifier": SDEClassificationTask,
    "spiral_sde": SpiralSDETask,
}


def make_task(config: ExperimentConfig, objective: Objective):
    return TASKS[config.task](config, objective)


def evaluation_model(model):
    """The model as used at test time: no local sampling, no integrals and no stiffness
    estimate in its solve (STEER is off without a key)."""
    if hasattr(model, "node"):
        node = dataclasses.replace(model.node, local=None, integrals=(), stiffness=False)
        return eqx.tree_at(lambda m: m.node, model, node)
    sde = dataclasses.replace(model.sde, local=None, stiffness=False)
    return eqx.tree_at(lambda m: m.sde, model, sde)


def count_parameters(model) -> int:
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    return int(sum(np.prod(x.shape) for x in leaves))
