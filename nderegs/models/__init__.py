"""Models of the papers' tasks, built on the layers."""

from .classifier import NODEClassifier
from .latent_ode import gaussian_kl, LatentODE
from .vector_fields import activation, ACTIVATIONS, TimeMLP
from .sde import moments, SDEClassifier, SpiralSDE
