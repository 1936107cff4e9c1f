"""local_gradient="trajectory": the local step re-taken from the differentiable y(t)."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import accepted_steps, step_terms

import nderegs

RTOL = ATOL = 1e-6
T1 = 2.0
CONTROLLER = diffrax.PIDController(rtol=RTOL, atol=ATOL)


def van_der_pol(t, y, mu):
    return jnp.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])


VDP = diffrax.ODETerm(van_der_pol)


def _y0():
    return jnp.array([2.0, 0.0])


def _solve(mu, *, gradient="trajectory", local="unbiased", key=7, adjoint=None, **kwargs):
    return nderegs.solve(
        VDP,
        diffrax.Tsit5(),
        kwargs.pop("t0", 0.0),
        kwargs.pop("t1", T1),
        None,
        kwargs.pop("y0", _y0()),
        mu,
        stepsize_controller=CONTROLLER,
        local=local,
        local_gradient=gradient,
        key=jax.random.key(key) if isinstance(key, int) else key,
        adjoint=adjoint,
        **kwargs,
    )


def _retaken_step(mu, t, dt):
    """EEst·dt of the step [t, t + dt] from y(t) of an independent, much tighter solve."""
    mu = jnp.asarray(mu, jnp.float64)  # an array: one compilation for every μ
    y_t = diffrax.diffeqsolve(
        VDP,
        diffrax.Tsit5(),
        0.0,
        t,
        None,
        _y0(),
        mu,
        stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-12),
        max_steps=100_000,
    ).ys
    ts = np.array([t, t + dt])
    return step_terms(VDP, diffrax.Tsit5(), ts, y_t, mu, RTOL, ATOL)[0]


@pytest.mark.parametrize(
    "adjoint, tolerance",
    [(diffrax.RecursiveCheckpointAdjoint(), 1e-3), (diffrax.BacksolveAdjoint(), 1e-3)],
    ids=["recursive_checkpoint", "backsolve"],
)
def test_trajectory_gradient_equals_finite_differences(x64, adjoint, tolerance):
    """d(local_error)/dμ includes dy(t)/dμ: it matches finite differences of the
    re-taken step with y(t) recomputed for each μ (t and dt fixed), with every adjoint."""
    mu0 = 1.0
    local = lambda mu: _solve(mu, adjoint=adjoint)[1].local_error
    value, grad = jax.value_and_grad(local)(mu0)
    h = _solve(mu0)[1]
    t, dt = float(h.local_t), float(h.local_dt)
    np.testing.assert_allclose(float(value), _retaken_step(mu0, t, dt), rtol=1e-3)
    eps = 1e-5
    fd = (_retaken_step(mu0 + eps, t, dt) - _retaken_step(mu0 - eps, t, dt)) / (2 * eps)
    assert abs(float(grad) - fd) / abs(fd) < tolerance
    # The step's own gradient (paper 2's estimator) misses the trajectory's part.
    step_grad = jax.grad(lambda mu: _solve(mu, gradient="step")[1].local_error)(mu0)
    assert abs(float(step_grad) - fd) / abs(fd) > 10 * tolerance


def test_biased_trajectory_gradient_through_the_solver(x64):
    """Biased sampling keeps the sampled step's start state differentiable through the
    solver: the gradient is that of the whole frozen-grid solve up to that step."""
    mu0 = 1.0
    local = lambda mu: _solve(mu, local="biased")[1].local_error
    value, grad = jax.value_and_grad(local)(mu0)
    h = _solve(mu0, local="biased")[1]
    ts, _ = accepted_steps(VDP, diffrax.Tsit5(), 0.0, T1, _y0(), mu0, CONTROLLER)
    j = int(np.searchsorted(ts, float(h.local_t), side="right") - 1)
    assert ts[j] == float(h.local_t)

    def frozen(mu):
        # The accepted grid up to step j held fixed, step j's term re-computed.
        ys = [np.asarray(_y0())]
        for a, b in zip(ts[:j], ts[1 : j + 1]):
            state = diffrax.Tsit5().init(VDP, a, b, jnp.asarray(ys[-1]), mu)
            ys.append(
                np.asarray(diffrax.Tsit5().step(VDP, a, b, jnp.asarray(ys[-1]), mu, state, True)[0])
            )
        return step_terms(
            VDP, diffrax.Tsit5(), ts[j : j + 2], jnp.asarray(ys[-1])[None], mu, RTOL, ATOL
        )[0]

    np.testing.assert_allclose(float(value), frozen(mu0), rtol=1e-9)
    eps = 1e-6
    fd = (frozen(mu0 + eps) - frozen(mu0 - eps)) / (2 * eps)
    assert abs(float(grad) - fd) / abs(fd) < 1e-5


def test_unbiased_trajectory_estimate_averages_to_the_time_integral(x64):
    """With trajectory gradients each sample is T·EEst(t), EEst(t) the scaled error of
    a step of the accepted size started at t (not at the step's start), so the
    estimate averages to ∫ EEst(t) dt, the continuous-time counterpart of
    R_E = Σ_j EEst_j·h_j; checked against a quadrature of the independent reference."""
    ts, _ = accepted_steps(VDP, diffrax.Tsit5(), 0.0, T1, _y0(), 1.0, CONTROLLER)
    grid = (np.arange(1000) + 0.5) * T1 / 1000
    y_grid = diffrax.diffeqsolve(
        VDP,
        diffrax.Tsit5(),
        0.0,
        T1,
        None,
        _y0(),
        1.0,
        stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-12),
        saveat=diffrax.SaveAt(ts=jnp.asarray(grid)),
        max_steps=100_000,
    ).ys
    # The accepted size of the step containing t, ending at T1 at the latest.
    dts = np.minimum(np.diff(ts)[np.searchsorted(ts, grid, side="right") - 1], T1 - grid)

    @jax.jit
    @jax.vmap
    def eest(t, dt, y):
        state = diffrax.Tsit5().init(VDP, t, t + dt, y, 1.0)
        y1, err, _, _, _ = diffrax.Tsit5().step(VDP, t, t + dt, y, 1.0, state, True)
        return jnp.sqrt(jnp.mean((err / (ATOL + RTOL * jnp.maximum(jnp.abs(y), jnp.abs(y1)))) ** 2))

    integral = float(np.mean(eest(jnp.asarray(grid), jnp.asarray(dts), y_grid))) * T1

    def estimate(key):
        h = _solve(1.0, key=key)[1]
        return h.local_weight * h.local_error

    samples = np.asarray(jax.jit(jax.vmap(estimate))(jax.random.split(jax.random.key(3), 1000)))
    standard_error = samples.std() / np.sqrt(len(samples))
    assert abs(samples.mean() - integral) < 4 * standard_error
    assert abs(samples.mean() - integral) / integral < 0.05


SAVEATS = {
    "t1": lambda: diffrax.SaveAt(t1=True),
    "ts": lambda: diffrax.SaveAt(ts=jnp.linspace(0.0, T1, 7)),
    "t0_ts_t1": lambda: diffrax.SaveAt(t0=True, ts=jnp.array([0.3, 0.3, 1.1]), t1=True),
    "dense": lambda: diffrax.SaveAt(dense=True, t1=True),
    "steps": lambda: diffrax.SaveAt(steps=True),
    "fn": lambda: diffrax.SaveAt(ts=jnp.array([0.5, 1.5]), fn=lambda t, y, args: y[0] ** 2),
    "subs": lambda: diffrax.SaveAt(
        subs=[diffrax.SubSaveAt(t1=True), diffrax.SubSaveAt(ts=jnp.array([1.0, 1.5]))]
    ),
}


@pytest.mark.bit_identical
@pytest.mark.parametrize("name", SAVEATS)
def test_saved_state_never_reaches_the_user(x64, name):
    """The extra save of y(t) is removed: `sol` is diffeqsolve's for the user's SaveAt."""
    saveat = SAVEATS[name]()
    sol, h = _solve(1.0, saveat=saveat)
    reference = diffrax.diffeqsolve(
        VDP,
        diffrax.Tsit5(),
        0.0,
        T1,
        None,
        _y0(),
        1.0,
        stepsize_controller=CONTROLLER,
        saveat=saveat,
    )
    assert jax.tree_util.tree_structure(sol.ys) == jax.tree_util.tree_structure(reference.ys)
    for a, b in zip(
        jax.tree_util.tree_leaves((sol.ts, sol.ys)),
        jax.tree_util.tree_leaves((reference.ts, reference.ys)),
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    if saveat.dense:
        np.testing.assert_array_equal(
            np.asarray(sol.evaluate(0.7)), np.asarray(reference.evaluate(0.7))
        )
    assert bool(h.local_error > 0)


@pytest.mark.bit_identical
def test_reverse_time_and_integrals(x64):
    """Backwards in time (t0 > t1) with user ts, and with integral channels: the same
    solution as without trajectory gradients, and the local step starts at local_t."""
    saveat = diffrax.SaveAt(ts=jnp.array([T1, 1.2, 0.4]))
    sol, h = _solve(1.0, t0=T1, t1=0.0, saveat=saveat)
    ref, h_ref = _solve(1.0, t0=T1, t1=0.0, saveat=saveat, gradient="step")
    np.testing.assert_array_equal(np.asarray(sol.ys), np.asarray(ref.ys))
    np.testing.assert_array_equal(np.asarray(h.local_t), np.asarray(h_ref.local_t))
    assert 0.0 < float(h.local_t) < T1
    assert float(h.local_dt) == min(float(h_ref.local_dt), float(h.local_t))  # ends at 0
    sol_i, h_i = _solve(
        1.0, saveat=saveat.__class__(ts=jnp.array([0.4, 1.2])), integrals=[nderegs.KineticEnergy()]
    )
    ref_i, h_ri = _solve(
        1.0,
        saveat=saveat.__class__(ts=jnp.array([0.4, 1.2])),
        integrals=[nderegs.KineticEnergy()],
        gradient="step",
    )
    np.testing.assert_array_equal(np.asarray(sol_i.ys), np.asarray(ref_i.ys))
    assert float(h_i.integrals[0]) == float(h_ri.integrals[0])


def test_biased_trajectory_refuses_adjoints_that_do_not_differentiate_the_solver(x64):
    with pytest.raises(
        ValueError, match="local='biased' with local_gradient='trajectory'.*BacksolveAdjoint"
    ):
        _solve(1.0, local="biased", adjoint=diffrax.BacksolveAdjoint())


def test_rejects_unknown_local_gradient():
    with pytest.raises(
        ValueError, match="Unknown local_gradient='path'; accepted: 'step', 'trajectory'"
    ):
        _solve(1.0, gradient="path")


def test_sde_trajectory_steps_stay_on_the_brownian_path(x64):
    """On an SDE the re-taken step uses the same Brownian path, which ends at t1: a
    sampled t in the last step gives a step shortened to end there (no error), and the
    gradient reaches the drift's parameter through y(t)."""
    sde = nderegs.NeuralSDE(
        lambda t, y, a: -a * y,
        lambda t, y, a: 0.2 * y,
        rtol=1e-2,
        atol=1e-2,
        local="unbiased",
        local_gradient="trajectory",
        batched=False,
    )

    def local(a, key):
        _, h = sde.solve(jnp.array([1.0, 0.5]), key=key, args=a)
        return h.local_error * h.local_weight, h

    keys = jax.random.split(jax.random.key(0), 64)
    (values, h), grads = jax.jit(jax.vmap(jax.value_and_grad(local, has_aux=True), (None, 0)))(
        1.0, keys
    )
    assert np.all(np.isfinite(np.asarray(values))) and np.all(np.isfinite(np.asarray(grads)))
    ends = np.asarray(h.local_t + h.local_dt)
    assert np.all(ends <= 1.0 + 1e-12) and np.any(ends > 1.0 - 1e-12)  # some end at t1
