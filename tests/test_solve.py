"""nderegs.solve against independent computations (float64 where precision matters)."""

from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import accepted_steps, frozen_grid_error, step_terms

import nderegs

RTOL = ATOL = 1e-6
T1 = 10.0


def van_der_pol(t, y, mu):
    return jnp.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])


VDP = diffrax.ODETerm(van_der_pol)
CONTROLLER = diffrax.PIDController(rtol=RTOL, atol=ATOL)
SOLVERS = [diffrax.Tsit5(), diffrax.Dopri5()]


def _y0():
    return jnp.array([2.0, 0.0])


# Every kind of save in one solve (one compilation per solver): the end point, given
# times, every step, and dense output. (SaveAt fn, t0+ts+t1 and more, with drawn numbers:
# tests/test_equivalence.py.)
def _every_save():
    return diffrax.SaveAt(
        subs=[
            diffrax.SubSaveAt(t1=True),
            diffrax.SubSaveAt(ts=jnp.linspace(0.0, T1, 23)),
            diffrax.SubSaveAt(t0=True, steps=True),
        ],
        dense=True,
    )


@pytest.mark.bit_identical
@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: type(s).__name__)
def test_same_solution_as_diffeqsolve(x64, solver):
    kwargs = dict(stepsize_controller=CONTROLLER, saveat=_every_save(), max_steps=4096)
    ref = diffrax.diffeqsolve(VDP, solver, 0.0, T1, None, _y0(), 5.0, **kwargs)
    sol, h = nderegs.solve(VDP, solver, 0.0, T1, None, _y0(), 5.0, **kwargs)
    assert len(jax.tree_util.tree_leaves(sol.ys)) == 3
    for a, b in zip(jax.tree_util.tree_leaves(ref.ys), jax.tree_util.tree_leaves(sol.ys)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree_util.tree_leaves(ref.ts), jax.tree_util.tree_leaves(sol.ts)):
        np.testing.assert_array_equal(a, b)
    for k in ("num_steps", "num_accepted_steps", "num_rejected_steps"):
        assert int(ref.stats[k]) == int(sol.stats[k])
    assert int(h.num_steps) == int(ref.stats["num_steps"])
    assert int(h.num_rejected_steps) > 0  # the comparison covers rejections
    assert sol.solver_state is None and sol.controller_state is None
    ts = jnp.linspace(0.0, T1, 57)
    np.testing.assert_array_equal(jax.vmap(ref.evaluate)(ts), jax.vmap(sol.evaluate)(ts))


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: type(s).__name__)
def test_global_error_equals_retaken_steps(x64, solver):
    ts, ys = accepted_steps(VDP, solver, 0.0, T1, _y0(), 5.0, CONTROLLER)
    expected = step_terms(VDP, solver, ts, ys, 5.0, RTOL, ATOL).sum()
    _, h = nderegs.solve(VDP, solver, 0.0, T1, None, _y0(), 5.0, stepsize_controller=CONTROLLER)
    assert abs(float(h.error) - expected) / expected < 1e-6
    assert int(h.num_accepted_steps) == len(ts) - 1


@pytest.mark.parametrize("solver", SOLVERS + [diffrax.Dopri8()], ids=lambda s: type(s).__name__)
@pytest.mark.parametrize(
    "y0",
    [
        lambda: jnp.array([1.0]),
        lambda: jnp.linspace(-2.0, 3.0, 7),
        lambda: {"a": jnp.ones((2, 3)), "b": (jnp.array(-0.5), jnp.arange(4.0))},
    ],
    ids=["1d", "7d", "pytree"],
)
def test_stiffness_of_linear_decay_is_lambda_times_span(x64, solver, y0):
    lam, t0, t1 = 7.5, 0.3, 2.3
    term = diffrax.ODETerm(lambda t, y, args: jax.tree_util.tree_map(lambda x: -lam * x, y))
    _, h = nderegs.solve(
        term,
        solver,
        t0,
        t1,
        0.05,
        y0(),
        stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-10),
    )
    assert int(h.num_accepted_steps) > 5
    np.testing.assert_allclose(float(h.stiffness), lam * (t1 - t0), rtol=1e-6)
    np.testing.assert_allclose(float(h.max_stiffness), lam, rtol=1e-6)


def test_stiffness_is_a_stretch_of_the_jacobian_not_its_eigenvalue(x64):
    """Shampine's S = ‖Jv‖/‖v‖ (what the docs say): for y'' = −100 y, J = [[0, 1],
    [−100, 0]] has eigenvalues ±10i but singular values 1 and 100, and S lies between
    those, far above |λ| = 10 where the solution turns."""
    jacobian = jnp.array([[0.0, 1.0], [-100.0, 0.0]])
    term = diffrax.ODETerm(lambda t, y, args: jacobian @ y)
    controller = diffrax.PIDController(rtol=1e-6, atol=1e-6)
    _, h = nderegs.solve(
        term, diffrax.Tsit5(), 0.0, 1.0, None, jnp.array([1.0, 0.0]), stepsize_controller=controller
    )
    mean = float(h.stiffness)  # R_S / (t1 − t0): the time-weighted mean of S
    assert 1.0 <= mean <= 100.0 and 90.0 < float(h.max_stiffness) <= 100.0
    docs = (Path(__file__).parents[1] / "docs" / "guide.md").read_text(encoding="utf-8")
    assert f"is {float(h.max_stiffness):.1f}, not 10" in docs  # the figure the docs quote


def test_stiffness_float32_and_reverse_time():
    lam = 3.0
    term = diffrax.ODETerm(lambda t, y, args: -lam * y)
    ctrl = diffrax.PIDController(rtol=1e-4, atol=1e-6)
    y0 = jnp.ones(5, dtype=jnp.float32)
    _, h = nderegs.solve(term, diffrax.Tsit5(), 0.0, 2.0, None, y0, stepsize_controller=ctrl)
    assert h.stiffness.dtype == jnp.float32
    np.testing.assert_allclose(float(h.stiffness), lam * 2.0, rtol=1e-3)
    # Backwards in time the dynamics grow, but the eigenvalue magnitude is the same.
    _, h = nderegs.solve(term, diffrax.Tsit5(), 2.0, 0.0, None, y0, stepsize_controller=ctrl)
    np.testing.assert_allclose(float(h.stiffness), lam * 2.0, rtol=1e-3)


class _Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self, *_):
        self.calls += 1


def _counted(vector_field):
    counter = _Counter()

    def field(t, y, args):
        jax.debug.callback(counter, t)
        return vector_field(t, y, args)

    return diffrax.ODETerm(field), counter


NFE_CASES = {
    "tsit5-auto-dt0": (diffrax.Tsit5(), None, {}),
    "tsit5-dt0": (diffrax.Tsit5(), 0.01, {}),
    # A first step that is far too large is rejected: the FSAL stage is re-evaluated.
    "tsit5-rejected-first-step": (diffrax.Tsit5(), 5.0, {}),
    "dopri5": (diffrax.Dopri5(), None, {}),
    "dopri8-no-fsal": (diffrax.Dopri8(), 0.1, {}),
    "bosh3": (diffrax.Bosh3(), None, {}),
    "heun": (diffrax.Heun(), 0.1, {}),
    # Jumps force a fresh first stage after each one.
    "tsit5-jump-ts": (diffrax.Tsit5(), None, {"jump_ts": (2.5, 4.0, 7.25)}),
}


@pytest.mark.bit_identical
@pytest.mark.parametrize("case", list(NFE_CASES))
def test_nfe_equals_runtime_count(x64, case):
    """`h.nfe` is the number of evaluations counted at run time, and the same number as
    a plain `diffrax.diffeqsolve` of the problem makes on the same steps: the global
    estimates (R_E, and R_S where the solver has a stage pair) cost no evaluation."""
    solver, dt0, clip = NFE_CASES[case]
    ctrl = diffrax.PIDController(rtol=1e-5, atol=1e-5)
    if clip:
        ctrl = diffrax.ClipStepSizeController(ctrl, jump_ts=jnp.array(clip["jump_ts"]))
    term, counter = _counted(van_der_pol)
    _, h = nderegs.solve(term, solver, 0.0, T1, dt0, _y0(), 5.0, stepsize_controller=ctrl)
    assert int(h.nfe) == counter.calls
    term, plain = _counted(van_der_pol)
    ref = diffrax.diffeqsolve(term, solver, 0.0, T1, dt0, _y0(), 5.0, stepsize_controller=ctrl)
    assert int(ref.stats["num_steps"]) == int(h.num_steps)
    assert int(h.nfe) == plain.calls
    assert (h.stiffness is None) == (case in ("bosh3", "heun"))  # no stage pair
    if case == "tsit5-rejected-first-step":
        assert int(h.num_rejected_steps) > 0


def test_local_nfe_counted_separately(x64):
    term, counter = _counted(van_der_pol)
    _, h = nderegs.solve(
        term,
        diffrax.Tsit5(),
        0.0,
        T1,
        None,
        _y0(),
        5.0,
        stepsize_controller=CONTROLLER,
        local="unbiased",
        key=jax.random.key(0),
    )
    assert int(h.nfe) + h.local_nfe == counter.calls
    assert h.local_nfe == 7


def test_gradient_of_error_matches_finite_differences_on_frozen_grid(x64):
    solver, mu0 = diffrax.Tsit5(), 5.0
    ts, _ = accepted_steps(VDP, solver, 0.0, T1, _y0(), mu0, CONTROLLER)

    def global_error(mu):
        return nderegs.solve(VDP, solver, 0.0, T1, None, _y0(), mu, stepsize_controller=CONTROLLER)[
            1
        ].error

    grad = float(jax.grad(global_error)(mu0))
    frozen = jax.jit(lambda mu: frozen_grid_error(VDP, solver, ts, _y0(), mu, RTOL, ATOL))
    eps = 1e-6
    fd = (float(frozen(mu0 + eps)) - float(frozen(mu0 - eps))) / (2 * eps)
    assert np.isfinite(grad) and abs(grad - fd) / abs(fd) < 1e-4
    # The frozen-grid function is the same sum as the adaptive one at mu0.
    np.testing.assert_allclose(float(frozen(mu0)), float(global_error(mu0)), rtol=1e-10)


def test_gradients_through_network_parameters_are_finite(x64):
    mlp = eqx.nn.MLP(3, 3, 16, 2, activation=jnp.tanh, key=jax.random.key(0))
    term = diffrax.ODETerm(lambda t, y, model: model(y))

    def loss(model):
        _, h = nderegs.solve(
            term,
            diffrax.Tsit5(),
            0.0,
            1.0,
            None,
            jnp.ones(3),
            model,
            stepsize_controller=CONTROLLER,
        )
        return h.error + h.stiffness + h.max_stiffness

    grads = eqx.filter_grad(loss)(mlp)
    leaves = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_array))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(float(jnp.abs(g).max()) > 0 for g in leaves)


def test_zero_dynamics_have_zero_estimates_and_finite_gradients(x64):
    term = diffrax.ODETerm(lambda t, y, theta: theta * jnp.sin(y))

    def loss(theta):
        _, h = nderegs.solve(
            term,
            diffrax.Tsit5(),
            0.0,
            1.0,
            None,
            jnp.ones(4),
            theta,
            stepsize_controller=CONTROLLER,
            local="unbiased",
            key=jax.random.key(1),
        )
        return h.error + h.stiffness + h.local_error + h.local_stiffness, h

    (value, h), grad = jax.value_and_grad(loss, has_aux=True)(0.0)
    assert float(h.error) == 0.0 and float(h.stiffness) == 0.0
    assert float(value) == 0.0 and np.isfinite(float(grad))


def _local_batch(sampling, n, adjoint=None):
    def one(key):
        return nderegs.solve(
            VDP,
            diffrax.Tsit5(),
            0.0,
            T1,
            None,
            _y0(),
            5.0,
            stepsize_controller=CONTROLLER,
            local=sampling,
            key=key,
            adjoint=adjoint,
        )[1]

    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(42), n))


@pytest.mark.bit_identical
@pytest.mark.parametrize("sampling", ["unbiased", "biased"])
def test_local_estimate_is_one_term_and_unbiased(x64, sampling):
    ts, ys = accepted_steps(VDP, diffrax.Tsit5(), 0.0, T1, _y0(), 5.0, CONTROLLER)
    terms = step_terms(VDP, diffrax.Tsit5(), ts, ys, 5.0, RTOL, ATOL)
    h = _local_batch(sampling, 4000)
    np.testing.assert_allclose(float(h.error[0]), terms.sum(), rtol=1e-6)
    # Each sample is exactly the term of R_E of the step containing local_t.
    index = np.searchsorted(ts, np.asarray(h.local_t), side="right") - 1
    np.testing.assert_allclose(np.asarray(h.local_error), terms[index], rtol=1e-7)
    np.testing.assert_allclose(np.asarray(h.local_dt), np.diff(ts)[index], rtol=1e-12)
    if sampling == "biased":
        np.testing.assert_array_equal(np.asarray(h.local_t), ts[index])
        counts = np.bincount(index, minlength=len(terms))
        assert counts.min() > 0  # every step can be drawn
    else:
        assert np.all((np.asarray(h.local_t) >= 0) & (np.asarray(h.local_t) < T1))
    estimate = np.asarray(h.local_weight * h.local_error)
    standard_error = estimate.std() / np.sqrt(len(estimate))
    assert abs(estimate.mean() - terms.sum()) < 4 * standard_error
    assert abs(estimate.mean() - terms.sum()) / terms.sum() < 0.05


def test_local_gradient_with_any_adjoint(x64):
    """The local step's gradient is that of one step from a constant start state:
    the same with BacksolveAdjoint, and equal to finite differences of that step."""
    term = diffrax.ODETerm(van_der_pol)
    key = jax.random.key(7)

    def local(mu, adjoint):
        _, h = nderegs.solve(
            term,
            diffrax.Tsit5(),
            0.0,
            2.0,
            None,
            _y0(),
            mu,
            stepsize_controller=CONTROLLER,
            local="unbiased",
            key=key,
            adjoint=adjoint,
        )
        return h.local_error, h

    mu0 = 1.0
    (_, h), g_rc = jax.value_and_grad(local, has_aux=True)(
        mu0, diffrax.RecursiveCheckpointAdjoint()
    )
    (_, h_bs), g_bs = jax.value_and_grad(local, has_aux=True)(mu0, diffrax.BacksolveAdjoint())
    np.testing.assert_allclose(float(g_bs), float(g_rc), rtol=1e-10)
    np.testing.assert_allclose(float(h_bs.local_error), float(h.local_error), rtol=1e-12)
    # Finite differences of the single step with its start state frozen.
    ts, ys = accepted_steps(term, diffrax.Tsit5(), 0.0, 2.0, _y0(), mu0, CONTROLLER)
    j = int(np.searchsorted(ts, float(h.local_t), side="right") - 1)
    one = lambda mu: step_terms(
        term, diffrax.Tsit5(), ts[j : j + 2], ys[j : j + 2], mu, RTOL, ATOL
    )[0]
    eps = 1e-6
    fd = (one(mu0 + eps) - one(mu0 - eps)) / (2 * eps)
    assert abs(float(g_rc) - fd) / abs(fd) < 1e-4


def test_works_under_jit_vmap_grad_and_float32():
    mlp = eqx.nn.MLP(2, 2, 8, 1, activation=jnp.tanh, key=jax.random.key(0))
    term = diffrax.ODETerm(lambda t, y, model: model(y))
    ctrl = diffrax.PIDController(rtol=1e-4, atol=1e-4)

    @eqx.filter_jit
    def batched_loss(model, y0s, keys):
        def one(y0, key):
            sol, h = nderegs.solve(
                term,
                diffrax.Tsit5(),
                0.0,
                1.0,
                None,
                y0,
                model,
                stepsize_controller=ctrl,
                local="biased",
                key=key,
            )
            return jnp.sum(sol.ys**2) + h.error + h.local_error + 0.1 * h.stiffness

        return jnp.mean(jax.vmap(one)(y0s, keys))

    y0s = jax.random.normal(jax.random.key(1), (5, 2))
    keys = jax.random.split(jax.random.key(2), 5)
    value, grads = eqx.filter_value_and_grad(batched_loss)(mlp, y0s, keys)
    assert value.dtype == jnp.float32 and np.isfinite(float(value))
    leaves = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_array))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)


@pytest.mark.bit_identical
def test_implicit_solver_error_estimate_without_nfe(x64):
    ref = diffrax.diffeqsolve(
        VDP, diffrax.Kvaerno5(), 0.0, 3.0, None, _y0(), 5.0, stepsize_controller=CONTROLLER
    )
    sol, h = nderegs.solve(
        VDP, diffrax.Kvaerno5(), 0.0, 3.0, None, _y0(), 5.0, stepsize_controller=CONTROLLER
    )
    np.testing.assert_array_equal(ref.ys, sol.ys)
    assert float(h.error) > 0 and h.stiffness is None and h.nfe is None


@pytest.mark.bit_identical
def test_differentiating_global_estimates_through_backsolve_raises(x64):
    """BacksolveAdjoint cannot carry the gradient of a global estimate: asking for it
    raises at trace time (never a silent zero); its value, and gradients that do not
    involve it (the task loss, the estimate as auxiliary output), are unaffected."""

    def loss(mu, weight):
        sol, h = nderegs.solve(
            VDP,
            diffrax.Tsit5(),
            0.0,
            2.0,
            None,
            _y0(),
            mu,
            stepsize_controller=CONTROLLER,
            adjoint=diffrax.BacksolveAdjoint(),
        )
        regularizer = weight * h.error if weight else 0.0
        return jnp.sum(sol.ys) + regularizer, h.error

    (value, error), grad = jax.value_and_grad(loss, has_aux=True)(1.0, 0.0)
    reference = jax.grad(
        lambda mu: jnp.sum(
            diffrax.diffeqsolve(
                VDP,
                diffrax.Tsit5(),
                0.0,
                2.0,
                None,
                _y0(),
                mu,
                stepsize_controller=CONTROLLER,
                adjoint=diffrax.BacksolveAdjoint(),
            ).ys
        )
    )(1.0)
    assert float(error) > 0 and float(grad) == float(reference)
    with pytest.raises(
        ValueError,
        match=r"adjoint=BacksolveAdjoint\(\) does not differentiate.*RecursiveCheckpointAdjoint.*local=",
    ):
        jax.grad(lambda mu: loss(mu, 0.1)[0])(1.0)


# --- clear errors for bad input -------------------------------------------------


def _solve(**overrides):
    kwargs = dict(stepsize_controller=CONTROLLER)
    kwargs.update(overrides)
    solver = kwargs.pop("solver", diffrax.Tsit5())
    y0 = kwargs.pop("y0", _y0())
    return nderegs.solve(VDP, solver, 0.0, 1.0, 0.1, y0, 5.0, **kwargs)


def test_rejects_non_adaptive_controller():
    with pytest.raises(TypeError, match="adaptive step-size controller.*ConstantStepSize"):
        _solve(stepsize_controller=diffrax.ConstantStepSize())


def test_rejects_a_solver_without_an_error_estimate():
    with pytest.raises(ValueError, match=r"Euler returns no error estimate.*Tsit5"):
        _solve(solver=diffrax.Euler())


def test_rejects_local_without_key():
    with pytest.raises(ValueError, match="needs key="):
        _solve(local="unbiased")


def test_rejects_unknown_local():
    with pytest.raises(ValueError, match="Unknown local='uniform'.*'unbiased', 'biased'"):
        _solve(local="uniform", key=jax.random.key(0))


def test_rejects_stiffness_without_stage_pair():
    with pytest.raises(ValueError, match="Bosh3 has no pair.*Tsit5"):
        _solve(solver=diffrax.Bosh3(), stiffness=True)
    _, h = _solve(solver=diffrax.Bosh3())  # auto: no stiffness, no error
    assert h.stiffness is None


def test_rejects_controller_state():
    """A controller state to continue from is refused (the NFE count needs a fresh one),
    with the way to continue a solve named."""
    with pytest.raises(
        ValueError, match=r"does not accept controller_state=.*Use diffrax.diffeqsolve"
    ):
        _solve(controller_state=(jnp.array(0.1), jnp.array(1.0)))


def test_rejects_non_finite_y0():
    with pytest.raises(ValueError, match="y0 contains NaN or inf"):
        _solve(y0=jnp.array([jnp.nan, 0.0]))
    with pytest.raises(Exception, match="y0 contains NaN or inf"):
        jax.jit(lambda y0: _solve(y0=y0)[1].error)(jnp.array([jnp.inf, 0.0])).block_until_ready()


def test_scaled_error_is_the_controllers_and_safe_to_differentiate(x64):
    """Its value is the controller's expression (so XLA computes it once for both); its
    derivative counts non-finite error components (rejected steps) as zero."""
    from nderegs.core import scaled_error

    y0 = jnp.array([1.0, -2.0, 0.5])
    y1 = jnp.array([1.1, -1.9, jnp.nan])  # a NaN in the candidate: the scale uses y0
    err = jnp.array([1e-6, 3e-6, 2e-6])
    scale = 1e-6 + 1e-3 * np.abs([1.0, -2.0, 0.5])
    expected = np.sqrt(np.mean((np.array([1e-6, 3e-6, 2e-6]) / scale) ** 2))
    value = scaled_error(y0, y1, err, 1e-3, 1e-6, nderegs_rms)
    np.testing.assert_allclose(float(value), expected, rtol=1e-14)
    finite_y1 = jnp.array([1.1, -1.9, 0.7])
    scale = 1e-6 + 1e-3 * np.array([1.1, 2.0, 0.7])  # max(|y0|, |y1|)
    expected = np.sqrt(np.mean((np.array([1e-6, 3e-6, 2e-6]) / scale) ** 2))
    value = scaled_error(y0, finite_y1, err, 1e-3, 1e-6, nderegs_rms)
    np.testing.assert_allclose(float(value), expected, rtol=1e-14)

    # A step with a non-finite error (rejected, or forced through by dtmin) counts 0.
    with_inf = err.at[1].set(jnp.inf)
    assert float(scaled_error(y0, y1, with_inf, 1e-3, 1e-6, nderegs_rms)) == 0.0

    # Its gradient is finite, and 0 there; elsewhere that of the expression, tolerances
    # included, also when the tolerance is an argument of the jitted function.
    def expression(y0, err, rtol):
        return jnp.sqrt(jnp.mean((err / (1e-6 + rtol * jnp.maximum(jnp.abs(y0), y1_abs))) ** 2))

    y1_abs = jnp.abs(finite_y1)
    ours = lambda a, b, r: scaled_error(a, finite_y1, b, r, 1e-6, nderegs_rms)
    grads = jax.jit(jax.grad(ours, (0, 1, 2)))(y0, err, jnp.asarray(1e-3))
    expected = jax.grad(expression, (0, 1, 2))(y0, err, 1e-3)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-12)
    grads = jax.jit(jax.grad(ours, (0, 1, 2)))(y0, with_inf, jnp.asarray(1e-3))
    assert all(bool(jnp.all(g == 0)) for g in grads)
    # Differentiated outside the jit that traced the tolerance (a stale tracer, were
    # the tolerance closed over), and vmapped over tolerances.
    outside = jax.grad(jax.jit(ours), 2)(y0, err, jnp.asarray(1e-3))
    np.testing.assert_allclose(float(outside), float(expected[2]), rtol=1e-12)
    batch = jax.vmap(jax.grad(ours, 2), in_axes=(None, None, 0))(y0, err, jnp.array([1e-3, 1e-4]))
    np.testing.assert_allclose(float(batch[0]), float(expected[2]), rtol=1e-12)


def nderegs_rms(x):
    return jnp.sqrt(jnp.mean(x**2))


def test_stiffness_estimate_from_the_stages(x64):
    """S = ‖k_b − k_a‖ / (|dt|·‖Σ_j d_j k_j‖) over a pytree of stages (and complex
    stages), 0 with a gradient of 0 where the stages are equal."""
    from nderegs.core import find_stage_pair, stiffness_estimate

    pair = find_stage_pair(diffrax.Tsit5())
    assert pair is not None and (pair.a, pair.b) == (5, 6)
    keys = jax.random.split(jax.random.key(0), 3)
    real = {"a": jax.random.normal(keys[0], (7, 3, 2)), "b": jax.random.normal(keys[1], (7, 4))}
    complex_ = jax.lax.complex(real["b"], jax.random.normal(keys[2], (7, 4)))
    for k in (real, complex_):
        flat = np.concatenate([np.asarray(v).reshape(7, -1) for v in jax.tree.leaves(k)], axis=1)
        dk = flat[6] - flat[5]
        dg = np.asarray(pair.stage_difference) @ flat
        expected = np.linalg.norm(dk) / (0.25 * np.linalg.norm(dg))
        value = stiffness_estimate(k, pair, -0.25)
        np.testing.assert_allclose(float(value), expected, rtol=1e-12)

    flat_stages = jnp.ones((7, 3))
    value, grad = jax.value_and_grad(lambda s: stiffness_estimate(s, pair, 0.1))(flat_stages)
    assert float(value) == 0.0 and bool(jnp.all(grad == 0))
