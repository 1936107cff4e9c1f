"""Regularization methods: which terms a method adds to the task loss and how the solve
must be set up for them. Knows nothing of configs, tasks or the command line."""

from .method import Regularization, SolveSetup
from .regularizers import (
    AbstractRegularizer,
    GlobalError,
    GlobalStiffness,
    LocalError,
    LocalStiffness,
    RNODE,
    Steer,
    TayNODE,
)

__all__ = [
    "AbstractRegularizer",
    "GlobalError",
    "GlobalStiffness",
    "LocalError",
    "LocalStiffness",
    "RNODE",
    "Regularization",
    "SolveSetup",
    "Steer",
    "TayNODE",
]
