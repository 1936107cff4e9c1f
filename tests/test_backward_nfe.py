"""The backward pass's counts (`nderegs.BackwardCount`, `Heuristics.backward_nfe`)
against an independent count: a vector field whose primal evaluations and VJPs call
the host, counted outside `jit` while the compiled forward and backward passes run
one after the other."""

import json

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import pytest

import nderegs
from nderegs.core import counting_backward

_calls = {"primal": 0, "vjp": 0}

#: The step counts the cases were chosen for (re-run steps, rejected first steps) are
#: float64's.
in_float64 = pytest.mark.usefixtures("x64")


def _bump(kind):
    def count():
        _calls[kind] += 1

    jax.debug.callback(count)


def _dynamics(t, y, w):
    return jnp.tanh(w @ y) * (1 + 0.5 * jnp.sin(3 * t))


@jax.custom_vjp
def _counted(t, y, w):
    _bump("primal")
    return _dynamics(t, y, w)


def _counted_fwd(t, y, w):
    _bump("primal")
    return jax.vjp(_dynamics, t, y, w)


def _counted_bwd(vjp, cotangent):
    _bump("vjp")
    return vjp(cotangent)


_counted.defvjp(_counted_fwd, _counted_bwd)


def _terms(sde: bool):
    drift = diffrax.ODETerm(lambda t, y, w: _counted(t, y, w))
    if not sde:
        return drift
    brownian = diffrax.VirtualBrownianTree(
        0.0, 3.0, tol=1e-3, shape=(4,), levy_area=diffrax.SpaceTimeLevyArea, key=jax.random.key(1)
    )
    noise = lambda t, y, w: lx.DiagonalLinearOperator(0.1 * jnp.ones(4))
    return diffrax.MultiTerm(drift, diffrax.ControlTerm(noise, brownian))


_PID = diffrax.PIDController(rtol=1e-6, atol=1e-6)
_SEMINORM = eqx.tree_at(lambda c: c.norm, _PID, diffrax.adjoint_rms_seminorm)
RC, DIRECT, BACKSOLVE = (
    diffrax.RecursiveCheckpointAdjoint,
    diffrax.DirectAdjoint,
    diffrax.BacksolveAdjoint,
)
#: (adjoint, solver, SDE?, rtol, dt0, max_steps[, options]). dt0=3 forces rejected
#: first steps (FSAL first stages evaluated again); max_steps=256 gives 22 checkpoints
#: by default, fewer than the ODE solves' 27-28 steps, so some steps are re-run;
#: max_steps=64 gives 10, fewer than half of them (every early step re-run). Options:
#: `local` (a local estimate re-taken from y(t), `local_gradient="trajectory"`, in the
#: loss; "only": the loss is that estimate alone, reaching the solve through y(t)),
#: `kinetic` (RNODE's kinetic energy integral in the loss).
CASES = {
    "checkpoint-tsit5-rejections": (RC(), diffrax.Tsit5(), False, 1e-6, 3.0, 256),
    "checkpoint-64-tsit5-rejections": (RC(), diffrax.Tsit5(), False, 1e-6, 3.0, 64),
    "checkpoint-20-dopri5-rejections": (RC(20), diffrax.Dopri5(), False, 1e-6, 3.0, 256),
    "checkpoint-heun-sde-rejections": (RC(), diffrax.Heun(), True, 1e-3, 3.0, 256),
    "checkpoint-20-spark-sde": (RC(20), diffrax.SPaRK(), True, 1e-3, None, 256),
    "checkpoint-local-only": (RC(), diffrax.Tsit5(), False, 1e-6, None, 256, {"local": "only"}),
    "checkpoint-kinetic": (RC(), diffrax.Dopri5(), False, 1e-6, None, 256, {"kinetic": True}),
    "direct-300-dopri5": (DIRECT(), diffrax.Dopri5(), False, 1e-6, None, 300),
    "direct-heun-sde-rejections": (DIRECT(), diffrax.Heun(), True, 1e-3, 3.0, 256),
    "backsolve-tsit5-rejections": (BACKSOLVE(), diffrax.Tsit5(), False, 1e-6, 3.0, 256),
    "backsolve-seminorm-dopri5": (
        BACKSOLVE(stepsize_controller=_SEMINORM),
        diffrax.Dopri5(),
        False,
        1e-6,
        None,
        256,
    ),
    "backsolve-heun-sde": (BACKSOLVE(), diffrax.Heun(), True, 1e-3, None, 2048),
    # y(t) saved for the re-taken step: one more backward segment
    "backsolve-local": (BACKSOLVE(), diffrax.Tsit5(), False, 1e-6, None, 256, {"local": "also"}),
}


def _loss(w, probe, case):
    adjoint, solver, sde, rtol, dt0, max_steps, *rest = case
    options = rest[0] if rest else {}
    extra = {}
    if "local" in options:
        extra = dict(local="unbiased", local_gradient="trajectory", key=jax.random.key(3))
    if options.get("kinetic"):
        extra = dict(integrals=(nderegs.KineticEnergy(),))
    sol, h = nderegs.solve(
        _terms(sde),
        solver,
        0.0,
        3.0,
        dt0,
        jnp.ones(4),
        w,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=rtol),
        adjoint=adjoint,
        max_steps=max_steps,
        backward_count=probe,
        **extra,
    )
    if options.get("local") == "only":
        return h.local_error, h
    value = jnp.sum(sol.ys[-1] ** 2)
    if options.get("local") == "also":
        value = value + h.local_error
    if options.get("kinetic"):
        value = value + h.integrals[0]
    return value, h


def _weights():
    return 2.0 * jax.random.normal(jax.random.key(0), (4, 4))


@in_float64
@pytest.mark.parametrize("name", list(CASES))
def test_backward_counts_equal_the_host_count(name):
    case = CASES[name]
    forward = jax.jit(lambda w, p: jax.vjp(lambda w, p: _loss(w, p, case), w, p, has_aux=True))
    backward = jax.jit(lambda vjp: vjp(jnp.ones(())))
    probe = nderegs.BackwardCount.probe()
    _calls.update(primal=0, vjp=0)  # the callbacks run when the compiled code runs
    value, vjp, h = forward(_weights(), probe)
    jax.block_until_ready(value)
    forward_evaluations = _calls["primal"]
    _, count = backward(vjp)
    jax.block_until_ready(count)
    backward_evaluations = _calls["primal"] - forward_evaluations
    assert forward_evaluations == int(h.nfe) + (h.local_nfe or 0)  # the forward count
    assert _calls["vjp"] > 0 and backward_evaluations > 0
    assert (float(count.nfe), float(count.vjps)) == (backward_evaluations, _calls["vjp"])
    if isinstance(case[0], BACKSOLVE):
        assert h.backward_nfe is None  # known only once the backward solve has run
    else:  # known when the forward solve ends (the solve's; the re-taken step's own)
        local = h.local_nfe or 0
        assert (float(h.backward_nfe) + local, float(h.backward_vjps) + local) == (
            backward_evaluations,
            _calls["vjp"],
        )
    if "rejections" in name:  # the cases cover what they say
        assert int(h.num_rejected_steps) > 0
    if name == "checkpoint-64-tsit5-rejections":
        assert int(h.num_steps) > 2 * 10  # more than twice the checkpoints


@pytest.mark.bit_identical
@in_float64
def test_counting_leaves_the_backsolve_gradient_bitwise_unchanged():
    """The probe's channel of Backsolve's adjoint state stays out of its error norm, so
    the backward solve takes the same steps. (Recursive checkpointing: the tiny run's
    rows and checkpoint are those of a run without counting, see the note of #27.)"""
    case = (BACKSOLVE(), diffrax.Dopri5(), False, 1e-6, None, 256)
    counted = jax.jit(jax.grad(lambda w, p: _loss(w, p, case)[0]))
    plain = jax.jit(jax.grad(lambda w: _loss(w, None, case)[0]))
    with_probe = counted(_weights(), nderegs.BackwardCount.probe())
    assert jnp.array_equal(with_probe, plain(_weights()))


@in_float64
def test_probe_of_an_enclosing_context_sums_the_solves():
    """`counting_backward` hands its probe to the solves inside it (the layers take no
    probe); two solves add up, and a solve the adjoint cannot count gives NaN."""
    term = diffrax.ODETerm(lambda t, y, w: jnp.tanh(w @ y))
    solve = lambda w, adjoint: nderegs.solve(
        term,
        diffrax.Tsit5(),
        0.0,
        1.0,
        None,
        jnp.ones(4),
        w,
        stepsize_controller=_PID,
        adjoint=adjoint,
    )

    def loss(w, probe, second):
        with counting_backward(probe):
            (sol1, h1), (sol2, h2) = solve(w, RC()), solve(w, second)
        return jnp.sum(sol1.ys**2) + jnp.sum(sol2.ys**2), (h1, h2)

    probe = nderegs.BackwardCount.probe()
    count, (h1, h2) = jax.grad(loss, argnums=1, has_aux=True)(_weights(), probe, DIRECT())
    assert float(count.nfe) == float(h1.backward_nfe) + float(h2.backward_nfe)
    assert float(count.vjps) == float(h1.nfe) + float(h2.nfe)
    uncounted = diffrax.ImplicitAdjoint()
    count, _ = jax.grad(loss, argnums=1, has_aux=True)(_weights(), probe, uncounted)
    assert jnp.isnan(count.nfe) and jnp.isnan(count.vjps)


@in_float64
def test_what_is_not_counted_is_nan_or_none_not_wrong():
    """A field differentiated inside its integrand (RNODE's Jacobian term) makes every
    backward evaluation second order; a non-checkpointed stage loop changes the
    schedule. Neither is counted: None in the heuristics, NaN in the probe."""
    term = diffrax.ODETerm(lambda t, y, w: jnp.tanh(w @ y))

    def counts(solver, adjoint, integrals=()):
        def loss(w, probe):
            sol, h = nderegs.solve(
                term,
                solver,
                0.0,
                1.0,
                None,
                jnp.ones(4),
                w,
                stepsize_controller=_PID,
                adjoint=adjoint,
                integrals=integrals,
                key=jax.random.key(0),
                backward_count=probe,
            )
            return jnp.sum(sol.ys**2) + sum(h.integrals or ()), h

        return jax.grad(loss, argnums=1, has_aux=True)(_weights(), nderegs.BackwardCount.probe())

    jacobian = (nderegs.JacobianFrobenius(),)
    for solver, adjoint, integrals in [
        (diffrax.Tsit5(), RC(), jacobian),
        (diffrax.Tsit5(scan_kind="lax"), RC(), ()),
    ]:
        count, h = counts(solver, adjoint, integrals)
        assert h.backward_nfe is None and jnp.isnan(count.nfe) and jnp.isnan(count.vjps)
    with pytest.raises(ValueError, match="JacobianFrobenius"):
        counts(diffrax.Tsit5(), BACKSOLVE(), jacobian)  # an explicit probe: said, not NaN
    with pytest.raises(TypeError, match="BackwardCount.probe"):
        nderegs.solve(
            term,
            diffrax.Tsit5(),
            0.0,
            1.0,
            None,
            jnp.ones(4),
            _weights(),
            stepsize_controller=_PID,
            backward_count=0.0,
        )


@in_float64
def test_past_the_checkpoint_schedule_the_count_is_nan_not_wrong():
    """More steps than (c + 1)(c + 2)/2 with c explicit checkpoints: equinox's schedule
    repeats more than the count models (measured: 575 evaluations for 27 steps and
    c = 5, not 2·163 + 22·6)."""
    _, h = _loss(_weights(), None, (RC(5), diffrax.Tsit5(), False, 1e-6, None, 256))
    assert int(h.num_steps) >= 21 and jnp.isnan(h.backward_nfe)
    assert float(h.backward_vjps) == float(h.nfe)


@in_float64
def test_backsolve_counting_refuses_terms_it_cannot_route_args_through():
    class Custom(diffrax.ODETerm):
        pass

    with pytest.raises(ValueError, match="ODETerm, ControlTerm and MultiTerm"):
        nderegs.solve(
            diffrax.MultiTerm(Custom(lambda t, y, a: -y)),
            diffrax.Tsit5(),
            0.0,
            1.0,
            None,
            jnp.ones(2),
            stepsize_controller=_PID,
            adjoint=BACKSOLVE(),
            backward_count=nderegs.BackwardCount.probe(),
        )


def test_a_training_run_records_the_backward_counts(tiny_runs):
    """metrics.jsonl and summary.json of the suite's tiny digits run: recursive
    checkpointing with fewer steps than checkpoints evaluates the field twice per
    forward evaluation and takes one VJP of each."""
    run = tiny_runs.finished("method=error")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run / "summary.json").read_text())
    for row in rows:
        assert row["train_backward_nfe"] == 2 * row["train_nfe"]
        assert row["train_backward_vjps"] == row["train_nfe"]
    assert summary["train_backward_nfe"] == 2 * summary["train_nfe"] > 0
