"""Regularization methods: which terms a method adds to the task loss, the coefficient
that weighs each (constant, scheduled, shared or set by a budget), and how the solve
must be set up for them. Knows nothing of configs, tasks or the command line."""

from .coefficients import (
    AbstractBudget,
    AbstractCoefficient,
    BudgetState,
    Constant,
    LossBudget,
    NFEBudget,
    Scheduled,
    Shared,
)
from .method import Regularization, SolveSetup
from .regularizers import (
    AbstractRegularizer,
    as_coefficient,
    GlobalError,
    GlobalStiffness,
    LocalError,
    LocalStiffness,
    RNODE,
    Steer,
    TayNODE,
)

__all__ = [
    "AbstractBudget",
    "AbstractCoefficient",
    "AbstractRegularizer",
    "BudgetState",
    "Constant",
    "GlobalError",
    "GlobalStiffness",
    "LocalError",
    "LocalStiffness",
    "LossBudget",
    "NFEBudget",
    "RNODE",
    "Regularization",
    "Scheduled",
    "Shared",
    "SolveSetup",
    "Steer",
    "TayNODE",
    "as_coefficient",
]
