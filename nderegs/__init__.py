"""nderegs: train neural differential equations that are cheap to solve.

The core exposes the adaptive solver's own error and stiffness estimates as
differentiable regularizers (`solve`, `Heuristics`); `NFEBudget` and `LossBudget` set
their coefficient from a budget instead of by hand.
"""

from .core import (
    AbstractIntegral,
    Heuristics,
    JacobianFrobenius,
    KineticEnergy,
    solve,
    TaylorDerivative,
)
from .layers import CNF, NeuralODE, NeuralSDE
from .regularization import LossBudget, NFEBudget

__version__ = "0.1.0"
