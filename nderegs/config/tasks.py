"""The task section: each task variant holds its data set, its model's sizes and its
own settings, and builds the task. Adding a task is a class here (listed in
`TaskConfig`), next to its module in `nderegs.tasks`."""

from __future__ import annotations

import abc
import typing
from typing import Annotated, ClassVar, Literal

import jax.numpy as jnp
import numpy as np
from pydantic import Field, model_validator

from ..layers import CNF, NeuralODE, NeuralSDE
from ..layers.cnf import NoiseKind, TraceEstimator
from ..layers.flow_matching import Coupling
from ..models import Activation
from ..regularization import Regularization
from ..tasks import (
    AbstractTask,
    Arrays,
    ClassifierTask,
    DensityTask,
    LatentODETask,
    SDEClassifierTask,
    SpiralSDETask,
)
from ..tasks.density import Training
from .base import Choice, Float, Int, Problems, Section, Variant
from .datasets import (
    ClassificationDataConfig,
    DensityDataConfig,
    Digits,
    Irregular,
    SpiralSDEData,
    TimeSeriesDataConfig,
    Toy2D,
)
from .solvers import layer, SolverConfig


class AbstractTaskConfig(Variant, abc.ABC):
    name: str
    #: The task the variant builds.
    task_class: ClassVar[type[AbstractTask]]

    @abc.abstractmethod
    def build(
        self, seed: int, regularization: Regularization, solver: SolverConfig
    ) -> tuple[AbstractTask, Arrays]:
        """The task and its data (training set first `data.subset` examples)."""


def _first(arrays: tuple[np.ndarray, ...], subset: int | None) -> tuple[np.ndarray, ...]:
    return arrays if subset is None else tuple(a[:subset] for a in arrays)


class ClassifierModel(Section):
    """The papers' neural ODE classifier."""

    #: ODE state width.
    hidden_size: Int = Field(default=32, gt=0)
    #: Width and number of hidden layers of the vector-field MLP (0 hidden layers:
    #: f(t, z) = σ(W [z; t]), paper 1's MNIST field, with σ the output activation).
    vf_width: Int = Field(default=32, gt=0)
    vf_depth: Int = Field(default=1, ge=0)
    activation: Activation = "tanh"
    #: The vector field's output activation: tanh (paper 1's MNIST field) or identity
    #: (paper 2's Dense→tanh→Dense).
    field_output_activation: Literal["tanh", "identity"] = "tanh"


class Classifier(AbstractTaskConfig):
    """Classify digits / MNIST / MNIST-1D with a neural ODE (`ClassifierTask`)."""

    name: Literal["classifier"] = "classifier"
    task_class = ClassifierTask
    data: ClassificationDataConfig = Field(default_factory=Digits)
    model: ClassifierModel = Field(default_factory=ClassifierModel)

    def build(self, seed, regularization, solver):
        data = self.data.load(seed)
        task = ClassifierTask(
            num_features=data.num_features,
            num_classes=data.num_classes,
            make_node=layer(NeuralODE, solver, regularization.setup),
            regularization=regularization,
            **self.model.model_dump(),
        )
        train = _first((data.x_train, data.y_train), self.data.subset)
        return task, Arrays(train, (data.x_test, data.y_test), data.source)


class SDEClassifierModel(Section):
    """Paper 1's MNIST SDE: tanh-MLP drift, linear diagonal diffusion."""

    hidden_size: Int = Field(default=32, gt=0)
    vf_width: Int = Field(default=32, gt=0)
    vf_depth: Int = Field(default=1, ge=1)


class SDEClassifier(AbstractTaskConfig):
    """Classify with a neural SDE (`SDEClassifierTask`)."""

    name: Literal["sde_classifier"] = "sde_classifier"
    task_class = SDEClassifierTask
    data: ClassificationDataConfig = Field(default_factory=Digits)
    model: SDEClassifierModel = Field(default_factory=SDEClassifierModel)
    #: Sampled paths per input in training.
    num_trajectories: Int = Field(default=1, gt=0)
    #: Paths whose logits are averaged at evaluation.
    predict_trajectories: Int = Field(default=10, gt=0)
    #: Tolerance of the virtual Brownian tree.
    brownian_tol: Float = Field(default=1e-3, gt=0)

    def build(self, seed, regularization, solver):
        data = self.data.load(seed)
        task = SDEClassifierTask(
            num_features=data.num_features,
            num_classes=data.num_classes,
            num_trajectories=self.num_trajectories,
            predict_trajectories=self.predict_trajectories,
            make_sde=layer(NeuralSDE, solver, regularization.setup, brownian_tol=self.brownian_tol),
            regularization=regularization,
            **self.model.model_dump(),
        )
        train = _first((data.x_train, data.y_train), self.data.subset)
        return task, Arrays(train, (data.x_test, data.y_test), data.source)


class LatentODEModel(Section):
    """GRU encoder, neural ODE in the latent space, MLP decoder."""

    latent_size: Int = Field(default=16, gt=0)
    encoder_hidden: Int = Field(default=32, gt=0)
    vf_width: Int = Field(default=32, gt=0)
    vf_depth: Int = Field(default=1, ge=1)
    decoder_width: Int = Field(default=32, gt=0)
    activation: Activation = "tanh"


class LatentODE(AbstractTaskConfig):
    """Interpolate irregularly sampled series with a latent ODE (`LatentODETask`)."""

    name: Literal["latent_ode"] = "latent_ode"
    task_class = LatentODETask
    data: TimeSeriesDataConfig = Field(default_factory=Irregular)
    model: LatentODEModel = Field(default_factory=LatentODEModel)
    #: Standard deviation of the Gaussian observation likelihood.
    obs_std: Float = Field(default=0.01, gt=0)
    #: Epochs over which the KL weight warms up to 1 (0: 1 from the start).
    kl_anneal_epochs: Int = Field(default=0, ge=0)

    def build(self, seed, regularization, solver):
        data = self.data.load(seed)
        task = LatentODETask(
            times=jnp.asarray(data.times),
            num_channels=data.num_channels,
            obs_std=self.obs_std,
            kl_anneal_epochs=self.kl_anneal_epochs,
            make_node=layer(NeuralODE, solver, regularization.setup),
            regularization=regularization,
            **self.model.model_dump(),
        )
        train = _first((data.values_train, data.mask_train), self.data.subset)
        return task, Arrays(train, (data.values_test, data.mask_test))


class SpiralSDEModel(Section):
    """Drift W₂ tanh(W₁ u³) and diffusion w ⊙ u + b."""

    vf_width: Int = Field(default=32, gt=0)


class SpiralSDE(AbstractTaskConfig):
    """Fit the moments of paper 1's spiral SDE (`SpiralSDETask`)."""

    name: Literal["spiral_sde"] = "spiral_sde"
    task_class = SpiralSDETask
    data: SpiralSDEData = Field(default_factory=SpiralSDEData)
    model: SpiralSDEModel = Field(default_factory=SpiralSDEModel)
    #: Paths sampled for each training loss (at least 2: the loss has a variance).
    num_trajectories: Int = Field(default=100, gt=1)
    #: Paths the moments are computed from at evaluation.
    predict_trajectories: Int = Field(default=1000, gt=1)
    #: Tolerance of the virtual Brownian tree.
    brownian_tol: Float = Field(default=1e-3, gt=0)

    def build(self, seed, regularization, solver):
        data = self.data.load(seed)
        task = SpiralSDETask(
            times=jnp.asarray(data.times),
            y0=jnp.asarray(data.y0),
            num_channels=data.num_channels,
            vf_width=self.model.vf_width,
            num_trajectories=self.num_trajectories,
            predict_trajectories=self.predict_trajectories,
            make_sde=layer(NeuralSDE, solver, regularization.setup, brownian_tol=self.brownian_tol),
            regularization=regularization,
        )
        # One "example": the moments over time, as one batch.
        train = (data.mean_train[None], data.var_train[None])
        return task, Arrays(train, (data.mean_test[None], data.var_test[None]))


class DensityModel(Section):
    """FFJORD's CNF: a concat-squash MLP field and the trace estimator."""

    #: Width and number of hidden layers of the concat-squash field.
    width: Int = Field(default=32, gt=0)
    depth: Int = Field(default=2, ge=1)
    activation: Activation = "tanh"
    #: The trace of ∂f/∂z in training: exact (dim Jacobian-vector products; for small
    #: dimensions) or hutchinson (one, with noise drawn once per solve). Evaluation
    #: always uses the exact trace.
    trace: TraceEstimator = "exact"
    #: Hutchinson's noise: rademacher | gaussian.
    noise: NoiseKind = "rademacher"


class Density(AbstractTaskConfig):
    """Fit a density with a continuous normalizing flow (`DensityTask`); metric the
    test negative log-likelihood in nats."""

    name: Literal["density"] = "density"
    task_class = DensityTask
    data: DensityDataConfig = Field(default_factory=Toy2D)
    model: DensityModel = Field(default_factory=DensityModel)
    #: maximum_likelihood (FFJORD: a solve per step) or flow_matching (no solve; a
    #: method's terms are then those of the sampling solve).
    training: Training = "maximum_likelihood"
    #: Flow matching's pairing of data and base samples: independent | ot (the batch's
    #: exact optimal-transport assignment).
    coupling: Coupling = "independent"

    @model_validator(mode="after")
    def _check_coupling(self) -> Density:
        if self.coupling != "independent" and self.training != "flow_matching":
            raise Problems(
                ("coupling", self.coupling, "pairs samples for training=flow_matching only")
            )
        return self

    def build(self, seed, regularization, solver):
        data = self.data.load(seed)
        m = self.model
        task = DensityTask(
            dim=data.dim,
            make_cnf=layer(CNF, solver, regularization.setup, trace=m.trace, noise=m.noise),
            regularization=regularization,
            **m.model_dump(exclude={"trace", "noise"}),
            training=self.training,
            coupling=self.coupling,
            nll_offset=data.nll_offset,
        )
        train = _first((data.x_train,), self.data.subset)
        return task, Arrays(train, (data.x_test,))


TaskConfig = Annotated[
    Classifier | SDEClassifier | LatentODE | SpiralSDE | Density, Choice(default=Classifier)
]
#: The tasks (`task.name`), in the order of `TaskConfig`.
TASKS: tuple[str, ...] = tuple(
    task.model_fields["name"].default for task in typing.get_args(typing.get_args(TaskConfig)[0])
)
