"""Julia-style neural differential equation layers over the core."""

from .base import AbstractNeuralDE, BatchedField, MakeNode, MakeSDE, ParameterlessFieldWarning
from .cnf import CNF, standard_normal_log_prob
from .flow_dynamics import FlowDynamics, on_flow
from .neural_ode import NeuralODE, time_concat
from .neural_sde import DiagonalNoise, GeneralNoise, NeuralSDE
