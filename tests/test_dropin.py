"""`nderegs.solve` is a drop-in for `diffrax.diffeqsolve`: the cases a diffrax user
reaches first (every adjoint, complex and mixed dtypes under strict promotion), each
compared with diffeqsolve's own Solution."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nderegs

# Each test compares two programs' bits: nderegs.solve's and diffeqsolve's.
pytestmark = pytest.mark.bit_identical

PID = diffrax.PIDController(rtol=1e-6, atol=1e-6)


def _decay(t, y, args):
    return -jnp.asarray(args, y.dtype) * y if args is not None else -y


def _assert_same_solution(sol, ref):
    assert sol.result == ref.result
    for key in ("num_steps", "num_accepted_steps", "num_rejected_steps"):
        assert int(sol.stats[key]) == int(ref.stats[key]), key
    np.testing.assert_array_equal(np.asarray(sol.ts), np.asarray(ref.ts))
    for a, b in zip(jax.tree_util.tree_leaves(sol.ys), jax.tree_util.tree_leaves(ref.ys)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("solver", [diffrax.Tsit5(), diffrax.Kvaerno5()], ids=["tsit5", "kvaerno5"])
@pytest.mark.parametrize(
    "adjoint", [diffrax.DirectAdjoint(), diffrax.ForwardMode()], ids=["direct", "forward"]
)
def test_direct_and_forward_mode_adjoints(solver, adjoint):
    term = diffrax.ODETerm(_decay)
    y0 = jnp.array([1.0, 2.0])
    args = dict(
        stepsize_controller=PID, adjoint=adjoint, saveat=diffrax.SaveAt(ts=jnp.linspace(0, 1, 4))
    )
    ref = diffrax.diffeqsolve(term, solver, 0.0, 1.0, None, y0, 2.0, **args)
    sol, h = nderegs.solve(term, solver, 0.0, 1.0, None, y0, 2.0, **args)
    _assert_same_solution(sol, ref)
    assert np.isfinite(float(h.error)) and float(h.error) > 0

    def error_of(rate):
        return nderegs.solve(term, solver, 0.0, 1.0, None, y0, rate, **args)[1].error

    if isinstance(adjoint, diffrax.ForwardMode):
        _, tangent = jax.jvp(error_of, (2.0,), (1.0,))
    else:
        tangent = jax.grad(error_of)(2.0)
    assert np.isfinite(float(tangent))


def test_implicit_adjoint_steady_state():
    # y' = 1 - y relaxes to 1; ImplicitAdjoint differentiates the steady state.
    term = diffrax.ODETerm(lambda t, y, a: a - y)
    event = diffrax.Event(diffrax.steady_state_event())
    args = dict(
        stepsize_controller=PID, adjoint=diffrax.ImplicitAdjoint(), event=event, max_steps=None
    )
    ref = diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, jnp.inf, 0.1, jnp.zeros(2), 1.0, **args)
    sol, h = nderegs.solve(term, diffrax.Tsit5(), 0.0, jnp.inf, 0.1, jnp.zeros(2), 1.0, **args)
    _assert_same_solution(sol, ref)
    assert h.error is None and h.nfe is None and int(h.num_steps) == int(ref.stats["num_steps"])
    # diffrax's implicit adjoint itself needs standard promotion (its own int/float mix)
    with jax.numpy_dtype_promotion("standard"):
        grad = jax.grad(
            lambda a: jnp.sum(
                nderegs.solve(term, diffrax.Tsit5(), 0.0, jnp.inf, 0.1, jnp.zeros(2), a, **args)[
                    0
                ].ys
            )
        )(1.0)
    np.testing.assert_allclose(float(grad), 2.0, rtol=1e-4)  # y* = a in both coordinates
    with pytest.raises(
        ValueError, match="local= cannot be combined with adjoint=diffrax.ImplicitAdjoint"
    ):
        nderegs.solve(
            term,
            diffrax.Tsit5(),
            0.0,
            jnp.inf,
            0.1,
            jnp.zeros(2),
            1.0,
            local="unbiased",
            key=jax.random.key(0),
            **args,
        )


@pytest.fixture
def strict():
    with jax.numpy_dtype_promotion("strict"):
        yield


@pytest.mark.parametrize(
    "y_dtype, t_dtype",
    [
        ("complex64", "float32"),
        ("complex128", "float64"),
        ("float64", "float32"),
        ("float32", "float64"),
        ("float32", "int32"),
        ("float64", "int32"),
    ],
)
def test_dtypes_under_strict_promotion(x64, strict, y_dtype, t_dtype):
    term = diffrax.ODETerm(lambda t, y, a: -y)
    y0 = jnp.array([1.0, 0.5], dtype=y_dtype)
    t0, t1 = jnp.asarray(0, t_dtype), jnp.asarray(1, t_dtype)
    ref = diffrax.diffeqsolve(term, diffrax.Tsit5(), t0, t1, None, y0, stepsize_controller=PID)
    sol, h = nderegs.solve(
        term,
        diffrax.Tsit5(),
        t0,
        t1,
        None,
        y0,
        stepsize_controller=PID,
        local="unbiased",
        key=jax.random.key(0),
    )
    _assert_same_solution(sol, ref)
    # diffeqsolve promotes the state with the times; R_E is in the state's real dtype
    assert h.error.dtype == jnp.finfo(sol.ys.dtype).dtype
    assert np.isfinite(float(h.error)) and np.isfinite(float(h.local_error))
    assert int(h.nfe) > 0


def test_complex_error_uses_the_controllers_norm(x64):
    # A complex state: EEst is the controller's rms norm of |y_err| / scale, so the
    # estimate of z = x + iy equals that of the real pair (x, y) with the same scale.
    term = diffrax.ODETerm(lambda t, y, a: (-1.0 + 2.0j) * y)
    y0 = jnp.array([1.0 + 0.5j], jnp.complex128)
    sol, h = nderegs.solve(term, diffrax.Tsit5(), 0.0, 1.0, None, y0, stepsize_controller=PID)
    ref = diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, 1.0, None, y0, stepsize_controller=PID)
    _assert_same_solution(sol, ref)
    # R_E = sum of the controller's scaled errors over the accepted steps, recomputed
    # from diffrax's own steps.
    steps = diffrax.diffeqsolve(
        term,
        diffrax.Tsit5(),
        0.0,
        1.0,
        None,
        y0,
        stepsize_controller=PID,
        saveat=diffrax.SaveAt(steps=True),
    )
    n = int(steps.stats["num_accepted_steps"])
    ts, ys = np.asarray(steps.ts[: n + 1]), steps.ys[: n + 1]
    ts = np.concatenate([[0.0], ts[:n]])
    ys = jnp.concatenate([y0[None], ys[:n]])
    total = 0.0
    for j in range(n):
        solver = diffrax.Tsit5()
        state = solver.init(term, ts[j], ts[j + 1], ys[j], None)
        y1, err, _, _, _ = solver.step(term, ts[j], ts[j + 1], ys[j], None, state, False)
        scale = 1e-6 + 1e-6 * jnp.maximum(jnp.abs(ys[j]), jnp.abs(y1))
        with jax.numpy_dtype_promotion("standard"):  # complex / real, as the controller
            ratio = err / scale
        total += float(jnp.sqrt(jnp.mean(jnp.abs(ratio) ** 2))) * (ts[j + 1] - ts[j])
    np.testing.assert_allclose(float(h.error), total, rtol=1e-10)


def test_state_without_leaves(x64, strict):
    term = diffrax.ODETerm(lambda t, y, a: y)
    t0, t1 = jnp.float32(0), jnp.float32(1)
    ref = diffrax.diffeqsolve(term, diffrax.Tsit5(), t0, t1, None, None, stepsize_controller=PID)
    sol, h = nderegs.solve(term, diffrax.Tsit5(), t0, t1, None, None, stepsize_controller=PID)
    assert sol.result == ref.result and float(h.error) == 0.0


_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # one per XLA compilation
# Each case's extra `nderegs.solve` arguments, and whether it is also called eagerly.
# Eagerly, the re-taken local step runs outside diffeqsolve's jit, and diffrax's stage
# loop then compiles on every call: the local case is checked under jit only.
_CASES = {
    "plain": (dict(), True),
    "local-stiffness-integrals": (
        dict(
            local="unbiased",
            local_gradient="trajectory",
            stiffness=True,
            integrals=(nderegs.JacobianFrobenius(),),
        ),
        False,
    ),
}


@pytest.mark.parametrize("case", list(_CASES))
def test_jit_of_every_case_compiles_once(case):
    """A drop-in is used under jit (and eagerly), and the wrapper adds no Python-side
    state: new values of the same shapes and dtypes (state, args, end time, tolerance,
    key) neither retrace a jitted caller nor, called eagerly, recompile anything."""
    options, eager = _CASES[case]
    term = diffrax.ODETerm(_decay)
    traces = []

    def run(y0, rate, t1, rtol, key):
        traces.append(1)  # once per trace under jit, once per call eagerly
        controller = diffrax.PIDController(rtol=rtol, atol=1e-6)
        sol, h = nderegs.solve(
            term,
            diffrax.Tsit5(),
            0.0,
            t1,
            None,
            y0,
            rate,
            stepsize_controller=controller,
            key=key,
            **options,
        )
        return sol.ys, h.error

    def values(i):
        return (
            jnp.array([1.0, 2.0]) + i,
            jnp.asarray(1.0 + 0.5 * i),
            jnp.asarray(1.0 + 0.25 * i),
            jnp.asarray(10.0 ** -(4 + i)),
            jax.random.key(i),
        )

    compiles = []

    def on_event(event, duration, **kwargs):
        if event == _COMPILE_EVENT:
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(on_event)
    try:
        callers = [(eqx.filter_jit(run), 0)] + ([(run, 1)] if eager else [])
        for call, traces_per_call in callers:
            errors = [float(call(*values(0))[1])]  # the one trace and compilation
            traces.clear()
            compiles.clear()
            errors += [float(call(*values(i))[1]) for i in (1, 2, 3)]
            assert len(traces) == 3 * traces_per_call, "retraced"
            assert len(compiles) == 0, "recompiled"
            assert len(set(errors)) == 4  # the new values were used
    finally:
        jax.monitoring.unregister_event_duration_listener(on_event)
