"""`AbstractNeuralDE`: what the Julia-style layers share: their `SolveOptions`, the
batch as one system, and the check that their fields can be trained."""

import abc
from collections.abc import Callable
from pathlib import Path
import sys
from typing import Any
import warnings

import diffrax
import equinox as eqx
import jax

from .solve_options import SolveOptions


def _callers_stacklevel() -> int:
    """The `stacklevel` that points a warning at the first frame outside nderegs and the
    libraries it calls through (jax, equinox, diffrax): the user's line, also under
    `jax.jit`."""
    modules = (sys.modules["nderegs"], jax, eqx, diffrax)
    libraries = tuple(str(Path(m.__file__).parent) for m in modules if m.__file__ is not None)
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(libraries):
        frame, level = frame.f_back, level + 1
    return level


class ParameterlessFieldWarning(UserWarning):
    """A layer's vector field (and the solve's `args`) carries no array a gradient can
    reach, so training it changes nothing."""


class AbstractNeuralDE(eqx.Module):
    """A neural differential equation solved by [`nderegs.solve`][] with its
    [`SolveOptions`][nderegs.layers.SolveOptions] (interval, solver, tolerances,
    adjoint, local sampling, stiffness estimate, `throw`). With `batched=True` the
    leading axis of the state is a batch solved as one system (one step size for the
    batch; the NFE is per batch), as the papers do.
    """

    options: eqx.AbstractVar[SolveOptions]
    batched: eqx.AbstractVar[bool]

    @abc.abstractmethod
    def vector_fields(self) -> dict[str, Callable]:
        """The layer's learnable functions by argument name (e.g. `drift`, `diffusion`)."""

    def check_trainable(self, args: Any = None) -> None:
        """Warn (`ParameterlessFieldWarning`) when a vector field holds no inexact array
        and `args` holds none either: then `eqx.filter_grad` of a loss of the layer has
        no leaf in that field and training silently leaves it as it is. The usual cause
        is a closure, `lambda t, y, args: mlp(y)`, which hides `mlp`'s parameters from
        the pytree; a Module whose `__call__(t, y, args)` applies the network keeps
        them. Each field is checked on its own (a NeuralSDE's diffusion as well as its
        drift). Runs at trace time only (once per compilation)."""
        if jax.tree_util.tree_leaves(eqx.filter(args, eqx.is_inexact_array)):
            return
        empty = [
            name
            for name, field in self.vector_fields().items()
            if not jax.tree_util.tree_leaves(eqx.filter(field, eqx.is_inexact_array))
        ]
        if not empty:
            return
        names = " and ".join(empty)
        warnings.warn(
            f"{type(self).__name__}: {names} (and args) carry no array a gradient can "
            "reach, so training leaves it as it is (eqx.filter_grad finds no leaf in "
            "it). A function closing over a network, `lambda t, y, args: mlp(y)`, hides "
            "its parameters: pass an equinox Module whose __call__(t, y, args) applies "
            "the network (e.g. nderegs.models.TimeMLP), or pass the network as args=. "
            "A field without parameters on purpose can ignore this warning.",
            ParameterlessFieldWarning,
            stacklevel=_callers_stacklevel(),
        )

    @abc.abstractmethod
    def for_evaluation(self) -> "AbstractNeuralDE":
        """The layer as used at test time: no local sampling, no stiffness estimate and
        nothing integrated along the solve beyond the state."""


class BatchedField(eqx.Module):
    """A per-sample field applied to every sample of a batch (a Module, so the field's
    parameters stay visible to diffrax, e.g. to BacksolveAdjoint)."""

    field: Callable

    def __call__(self, t, y, args):
        return jax.vmap(self.field, in_axes=(None, 0, None))(t, y, args)
