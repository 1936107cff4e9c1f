"""`AbstractNeuralDE`: what the Julia-style layers share: the solve settings, their
checks, the step-size controller, and the batch as one system."""

import abc
from collections.abc import Callable
from pathlib import Path
import sys
from typing import Any, TYPE_CHECKING
import warnings

import diffrax
import equinox as eqx
import jax

if TYPE_CHECKING:
    from .neural_ode import NeuralODE
    from .neural_sde import NeuralSDE


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
    """A neural differential equation solved by [`nderegs.solve`][] on [t0, t1].

    The tolerances define the error estimate EEst (what the error regularizer sums) as
    well as the steps: both come from one `diffrax.PIDController(rtol, atol, pcoeff,
    icoeff)` (default: the I controller). `local` ("unbiased" | "biased") samples one
    step for local regularization and then needs `key=` at call time;
    `local_gradient` ("step" | "trajectory") says what that step's estimate is
    differentiated through (see `nderegs.solve`); `stiffness` is passed to
    `nderegs.solve`. `throw=False` returns a failed solve (see
    `Heuristics.successful`) instead of raising, which training loops use to stop
    cleanly. With `batched=True` the leading axis of the state is a batch solved as
    one system (one step size for the batch; the NFE is per batch), as the papers do.
    """

    t0: eqx.AbstractVar[float]
    t1: eqx.AbstractVar[float]
    solver: eqx.AbstractVar[diffrax.AbstractSolver]
    rtol: eqx.AbstractVar[float]
    atol: eqx.AbstractVar[float]
    pcoeff: eqx.AbstractVar[float]
    icoeff: eqx.AbstractVar[float]
    dt0: eqx.AbstractVar[float | None]
    adjoint: eqx.AbstractVar[diffrax.AbstractAdjoint]
    max_steps: eqx.AbstractVar[int]
    local: eqx.AbstractVar[str | None]
    local_gradient: eqx.AbstractVar[str]
    stiffness: eqx.AbstractVar[bool | None]
    batched: eqx.AbstractVar[bool]
    throw: eqx.AbstractVar[bool]

    def __check_init__(self):
        name = type(self).__name__
        problems = []
        if self.t0 == self.t1:
            problems.append(f"t0 != t1 (got t0 = t1 = {self.t0})")
        if not (self.rtol > 0 and self.atol > 0):
            problems.append(f"rtol > 0 and atol > 0 (got rtol={self.rtol}, atol={self.atol})")
        if not (self.pcoeff >= 0 and self.icoeff > 0):
            problems.append(
                f"pcoeff >= 0 and icoeff > 0 (got pcoeff={self.pcoeff}, icoeff={self.icoeff})"
            )
        if problems:
            raise ValueError(f"{name} needs " + "; ".join(problems) + ".")

    def stepsize_controller(self) -> diffrax.PIDController:
        """The controller of the solve (and of the error estimate)."""
        return diffrax.PIDController(
            rtol=self.rtol, atol=self.atol, pcoeff=self.pcoeff, icoeff=self.icoeff
        )

    def solve_options(self) -> dict[str, Any]:
        """The keyword arguments of `nderegs.solve` that the layer's settings fix."""
        return dict(
            stepsize_controller=self.stepsize_controller(),
            adjoint=self.adjoint,
            max_steps=self.max_steps,
            local=self.local,
            local_gradient=self.local_gradient,
            stiffness=self.stiffness,
            throw=self.throw,
        )

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


#: Builds a layer around the model's vector field(s): `make_node(vector_field)` gives a
#: `NeuralODE`, `make_sde(drift, diffusion)` a `NeuralSDE`, e.g.
#: `functools.partial(NeuralODE, rtol=1e-8, atol=1e-8)`.
MakeNode = Callable[..., "NeuralODE"]
MakeSDE = Callable[..., "NeuralSDE"]
