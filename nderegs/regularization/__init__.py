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
from .method import Regularization, SolveSetup, VANILLA
from .regularizers import (
    AbstractLocalError,
    AbstractRegularizer,
    as_coefficient,
    BiasedLocalError,
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
    "AbstractLocalError",
    "AbstractRegularizer",
    "BiasedLocalError",
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
    "VANILLA",
    "as_coefficient",
]
