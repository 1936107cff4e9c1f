r"""The backward pass's counts, delivered as a gradient: `BackwardCount`.

A training step's backward pass runs after the forward solve has returned, so its
cost cannot be part of what the solve returns. It comes back the only way a value
leaves a backward pass: as a cotangent. The caller differentiates with respect to a
zero *probe* too, and the probe's gradient holds the counts, summed over every solve
that saw the probe:

- `RecursiveCheckpointAdjoint`, `DirectAdjoint`: the counts follow from the forward
  solve's statistics (`nderegs.core.backward_nfe`); the solve's outputs pass through
  an identity whose VJP returns them as the probe's cotangent, once, when the
  backward pass reaches the solve.
- `BacksolveAdjoint`: the backward pass is a second adaptive solve whose statistics
  diffrax discards (diffrax issue #195). The probe rides in `args`, so the adjoint
  state carries a channel for its cotangent; each segment of the backward solve adds
  its own count there (`CountingBacksolveAdjoint`), and that channel is left out
  of the error norm, so the backward steps are those of the uninstrumented solve.
  Every stage of the adjoint solve evaluates the field once and takes one VJP.

A custom-VJP side channel rather than a host callback: the counts stay inside the
compiled step (no host round trip per step, on any device) and arrive next to the
gradient, summed over solves and, under `jax.vmap`, over the batch.
"""

from collections.abc import Callable, Iterator
import contextlib
import threading

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, Float, PyTree

from .counting_controller import EvaluationCountingController
from .nfe import step_cost


class BackwardCount(eqx.Module):
    """Vector-field evaluations (`nfe`) and VJPs (`vjps`) of a backward pass.

    Use `BackwardCount.probe()` (zeros) as an extra argument of the differentiated
    function, pass it to `nderegs.solve(..., backward_count=probe)` (or open
    `counting_backward(probe)` around code that calls the layers), and read the
    counts from its gradient:

        ```python
        def loss(params, probe):
            sol, h = nderegs.solve(..., args=params, backward_count=probe)
            return jnp.sum(sol.ys[-1] ** 2)

        grads, count = jax.grad(loss, argnums=(0, 1))(params, nderegs.BackwardCount.probe())
        count.nfe, count.vjps   # the backward pass's evaluations and VJPs
        ```

    The counts are None-free floats: NaN where a solve's backward pass is not counted
    (see `nderegs.core.backward_nfe`).
    """

    nfe: Float[Array, ""]
    vjps: Float[Array, ""]

    @classmethod
    def probe(cls) -> "BackwardCount":
        return cls(nfe=jnp.zeros((), jnp.float32), vjps=jnp.zeros((), jnp.float32))


_active = threading.local()


@contextlib.contextmanager
def counting_backward(probe: BackwardCount) -> Iterator[BackwardCount]:
    """While tracing the body, every `nderegs.solve` without its own
    `backward_count=` counts its backward pass into `probe` (for code that calls the
    layers, which do not take a probe). It acts at trace time: a function compiled
    outside the context reports nothing, and a solve differentiated by an inner
    `jax.grad` reports to that gradient. A solve it cannot count reports NaN rather
    than raising (an explicit `backward_count=` raises, saying why)."""
    stack = _active.__dict__.setdefault("stack", [])
    stack.append(probe)
    try:
        yield probe
    finally:
        stack.pop()


def active_probe() -> BackwardCount | None:
    stack = _active.__dict__.get("stack", [])
    return stack[-1] if stack else None


def report_to_probe(
    outputs: PyTree, probe: BackwardCount, nfe: ArrayLike, vjps: ArrayLike
) -> PyTree:
    """`outputs` unchanged; their VJP adds (nfe, vjps) to the probe's cotangent."""
    leaves, treedef = jtu.tree_flatten(outputs)
    floats = [i for i, x in enumerate(leaves) if eqx.is_inexact_array(x)]
    if not floats:
        return outputs
    tagged = _tag(tuple(leaves[i] for i in floats), probe, jnp.asarray(nfe), jnp.asarray(vjps))
    for i, x in zip(floats, tagged):
        leaves[i] = x
    return jtu.tree_unflatten(treedef, leaves)


@jax.custom_vjp
def _tag(xs, probe, nfe, vjps):
    del probe, nfe, vjps
    return xs


def _tag_fwd(xs, probe, nfe, vjps):
    del probe
    return xs, (nfe, vjps)


def _tag_bwd(counts, cotangents):
    nfe, vjps = counts
    count = BackwardCount(nfe=nfe.astype(jnp.float32), vjps=vjps.astype(jnp.float32))
    return cotangents, count, jnp.zeros_like(nfe), jnp.zeros_like(vjps)


_tag.defvjp(_tag_fwd, _tag_bwd)


# --- BacksolveAdjoint: the probe in args, counted by the backward solve itself ---


class ProbedArgs(eqx.Module):
    """The user's `args` and the probe, so that the adjoint state has a channel for
    the probe's cotangent."""

    args: PyTree
    probe: BackwardCount


class _WithoutProbe(eqx.Module):
    vector_field: Callable

    def __call__(self, t, y, args):
        return self.vector_field(t, y, args.args)


_is_term = lambda x: isinstance(x, diffrax.AbstractTerm)


def _routable(term) -> bool:
    if isinstance(term, diffrax.MultiTerm):
        return all(_routable(t) for t in term.terms)
    # Exactly these: a subclass may evaluate something other than vector_field.
    return type(term) in (diffrax.ODETerm, diffrax.ControlTerm)


def _pid(controller) -> bool:
    if isinstance(controller, diffrax.ClipStepSizeController):
        return _pid(controller.controller)
    return isinstance(controller, diffrax.PIDController)


def backsolve_counting_refusal(terms, args, y0, t0, t1, solver, controller) -> str | None:
    """Why BacksolveAdjoint's backward solve cannot count itself into a probe, or
    None where it can."""
    if not all(_routable(t) for t in jtu.tree_leaves(terms, is_leaf=_is_term)):
        return (
            "with BacksolveAdjoint routes the probe through args, which it can do for "
            "diffrax.ODETerm, ControlTerm and MultiTerm of them only."
        )
    if not _pid(controller):
        return (
            "with BacksolveAdjoint needs a diffrax.PIDController (or a "
            "ClipStepSizeController around one) for the backward solve, whose error norm "
            f"must leave the probe's channel out; got {type(controller).__name__}."
        )
    if step_cost(solver, terms, t0, t1, y0, args) is None:
        return (
            f"cannot count {type(solver).__name__}'s evaluations per step (implicit "
            "solvers iterate a root finder whose count diffrax does not return)."
        )
    if any(jnp.finfo(x.dtype).bits < 32 for x in jtu.tree_leaves(y0) if eqx.is_inexact_array(x)):
        return "needs a float32 or float64 state: a lower precision would round the counts."
    return None


def with_probe(terms: PyTree, args: PyTree, probe: BackwardCount) -> tuple[PyTree, ProbedArgs]:
    """(terms, args) whose vector fields see the user's args while the probe travels
    in args (terms that `backsolve_counting_refusal` accepts)."""

    def strip(term):
        if isinstance(term, diffrax.MultiTerm):
            return diffrax.MultiTerm(*(strip(t) for t in term.terms))
        return eqx.tree_at(lambda t: t.vector_field, term, _WithoutProbe(term.vector_field))

    return jtu.tree_map(strip, terms, is_leaf=_is_term), ProbedArgs(args, probe)


class _NormWithoutProbe(eqx.Module):
    """The controller's norm of the adjoint state (y, a_y, a_args, a_terms) without the
    probe's channel in a_args."""

    norm: Callable

    def __call__(self, aug):
        y, a_y, a_args, a_terms = aug
        return self.norm((y, a_y, a_args.args, a_terms))


def _without_probe_in_norm(controller):
    if isinstance(controller, diffrax.ClipStepSizeController):
        return eqx.tree_at(
            lambda c: c.controller, controller, _without_probe_in_norm(controller.controller)
        )
    assert isinstance(controller, diffrax.PIDController)  # backsolve_counting_refusal
    return eqx.tree_at(lambda c: c.norm, controller, _NormWithoutProbe(controller.norm))


def _counting_backward_solve(*, controller_state, made_jump, **kwargs):
    """diffeqsolve for one segment of BacksolveAdjoint's backward solve, adding the
    segment's evaluations to the probe's channel of the adjoint state."""
    controller = _without_probe_in_norm(kwargs.pop("stepsize_controller"))
    counting = EvaluationCountingController(controller)  # pyright: ignore[reportCallIssue]
    before = jnp.array(0, jnp.int32)
    if controller_state is not None:
        before = controller_state.first_stage_evaluations
        if made_jump:  # a new segment re-evaluates the first stage
            controller_state = eqx.tree_at(
                lambda s: s.jump_pending, controller_state, jnp.array(True)
            )
    sol = diffrax.diffeqsolve(
        stepsize_controller=counting,
        controller_state=controller_state,
        made_jump=made_jump,
        **kwargs,
    )
    cost = step_cost(
        kwargs["solver"], kwargs["terms"], kwargs["t0"], kwargs["t1"], kwargs["y0"], kwargs["args"]
    )
    assert cost is not None  # backsolve_counting_refusal checked it
    counting_state = sol.controller_state
    assert counting_state is not None
    evaluations = cost.total(
        jnp.asarray(sol.stats["num_steps"]), counting_state.first_stage_evaluations - before
    )

    def add(aug):
        y, a_y, a_args, a_terms = aug
        probe = a_args.probe
        added = evaluations.astype(probe.nfe.dtype)
        counted = BackwardCount(nfe=probe.nfe + added, vjps=probe.vjps + added)
        return y, a_y, eqx.tree_at(lambda a: a.probe, a_args, counted), a_terms

    return eqx.tree_at(lambda s: s.ys, sol, add(sol.ys))


class CountingBacksolveAdjoint(diffrax.BacksolveAdjoint):
    """`diffrax.BacksolveAdjoint` whose backward solve adds its evaluations to the
    probe in `args` (`ProbedArgs`). Its only change is the diffeqsolve the backward
    pass calls; built by `nderegs.solve` from the user's BacksolveAdjoint.

    A deliberate exception to the abstract/final pattern (it subclasses a concrete
    diffrax class and overrides its `_diffeqsolve` property): diffrax offers no other
    way to see the backward solve's statistics (diffrax issue #195). The tests'
    Backsolve counts fail if a diffrax release moves that hook."""

    @property
    def _diffeqsolve(self):
        return _counting_backward_solve
