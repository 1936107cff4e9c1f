"""Julia-style neural differential equation layers over the core."""

from .base import AbstractNeuralDE, BatchedField, ParameterlessFieldWarning
from .cnf import CNF, standard_normal_log_prob
from .flow_dynamics import FlowDynamics, on_flow
from .neural_ode import MakeNode, NeuralODE, time_concat
from .neural_sde import DiagonalNoise, GeneralNoise, MakeSDE, NeuralSDE
from .solve_options import SolveOptions
