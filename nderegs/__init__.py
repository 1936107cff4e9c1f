"""nderegs: train neural differential equations that are cheap to solve.

The core exposes the adaptive solver's own error and stiffness estimates as
differentiable regularizers (`solve`, `Heuristics`); `NFEBudget` and `LossBudget` set
their coefficient from a budget instead of by hand.
"""

import importlib
from typing import TYPE_CHECKING

from .core import (
    AbstractIntegral,
    BackwardCount,
    Heuristics,
    JacobianFrobenius,
    KineticEnergy,
    solve,
    TaylorDerivative,
)
from .layers import CNF, NeuralODE, NeuralSDE, ParameterlessFieldWarning, SolveOptions
from .regularization import LossBudget, NFEBudget

__version__ = "0.1.0"

#: The subpackages, each imported on first use (`nderegs.train.load_run(...)` after a
#: plain `import nderegs`), so that importing the core does not load the training stack.
SUBPACKAGES = (
    "config",
    "core",
    "data",
    "layers",
    "models",
    "parallel",
    "regularization",
    "report",
    "runners",
    "tasks",
    "tracking",
    "train",
)

if TYPE_CHECKING:
    from . import (
        config,
        core,
        data,
        layers,
        models,
        parallel,
        regularization,
        report,
        runners,
        tasks,
        tracking,
        train,
    )


def __getattr__(name: str):
    if name in SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'nderegs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *SUBPACKAGES})
