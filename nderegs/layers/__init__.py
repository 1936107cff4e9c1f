"""Julia-style neural differential equation layers over the core."""

from .base import AbstractNeuralDE, BatchedField, MakeNode, MakeSDE
from .neural_ode import NeuralODE, time_concat
from .neural_sde import DiagonalNoise, GeneralNoise, NeuralSDE
