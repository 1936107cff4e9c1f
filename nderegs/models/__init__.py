"""Models of the papers' tasks, built on the layers."""

from .classifier import NODEClassifier
from .latent_ode import gaussian_kl, LatentODE
from .sde import moments, SDEClassifier, SpiralSDE
from .vector_fields import (
    Activation,
    activation,
    ACTIVATIONS,
    ConcatSquashLinear,
    ConcatSquashMLP,
    TimeMLP,
)
