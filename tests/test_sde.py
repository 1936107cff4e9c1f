"""nderegs.solve and NeuralSDE on SDEs, against plain diffrax on the same Brownian path."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import step_terms

import nderegs

RTOL = ATOL = 1e-4
CONTROLLER = diffrax.PIDController(rtol=RTOL, atol=ATOL)
SOLVERS = {
    "SPaRK": (diffrax.SPaRK(), diffrax.SpaceTimeLevyArea),
    "Heun": (diffrax.Heun(), diffrax.BrownianIncrement),
    "ShARK": (diffrax.ShARK(), diffrax.SpaceTimeLevyArea),
}


def _drift(t, y, args):
    return jnp.stack([-0.5 * y[0] ** 3 + 2.0 * y[1] ** 3, -2.0 * y[0] ** 3 - 0.5 * y[1] ** 3])


def _terms(name, sigma, drift=_drift, key=0):
    _, levy = SOLVERS[name]
    bm = diffrax.VirtualBrownianTree(
        0.0, 1.0, tol=1e-4, shape=(2,), key=jax.random.key(key), levy_area=levy
    )
    # Additive noise, so every solver here applies.
    return diffrax.MultiTerm(
        diffrax.ODETerm(drift), diffrax.ControlTerm(lambda t, y, a: sigma * jnp.eye(2), bm)
    )


Y0 = jnp.array([1.0, 0.5])


@pytest.mark.parametrize("name", list(SOLVERS))
def test_same_path_and_steps_as_diffeqsolve(x64, name):
    solver, _ = SOLVERS[name]
    saveat = diffrax.SaveAt(ts=jnp.linspace(0.0, 1.0, 11))
    ref = diffrax.diffeqsolve(
        _terms(name, 0.3), solver, 0.0, 1.0, 0.05, Y0, stepsize_controller=CONTROLLER, saveat=saveat
    )
    sol, h = nderegs.solve(
        _terms(name, 0.3),
        solver,
        0.0,
        1.0,
        0.05,
        Y0,
        stepsize_controller=CONTROLLER,
        saveat=saveat,
        stiffness=True,
    )
    np.testing.assert_array_equal(sol.ys, ref.ys)
    assert int(sol.stats["num_steps"]) == int(ref.stats["num_steps"])
    assert int(h.num_rejected_steps) > 0


@pytest.mark.parametrize("name", list(SOLVERS))
def test_global_error_equals_retaken_steps_on_the_same_brownian_path(x64, name):
    solver, _ = SOLVERS[name]
    terms = _terms(name, 0.3)
    sol = diffrax.diffeqsolve(
        terms,
        solver,
        0.0,
        1.0,
        0.05,
        Y0,
        stepsize_controller=CONTROLLER,
        saveat=diffrax.SaveAt(t0=True, steps=True),
    )
    n = int(sol.stats["num_accepted_steps"]) + 1
    expected = step_terms(terms, solver, np.asarray(sol.ts[:n]), sol.ys[:n], None, RTOL, ATOL)
    _, h = nderegs.solve(terms, solver, 0.0, 1.0, 0.05, Y0, stepsize_controller=CONTROLLER)
    np.testing.assert_allclose(float(h.error), expected.sum(), rtol=1e-8)


def test_zero_diffusion_reproduces_the_ode(x64):
    ode = diffrax.diffeqsolve(
        diffrax.ODETerm(_drift),
        diffrax.Dopri8(),
        0.0,
        1.0,
        None,
        Y0,
        stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10),
    )
    errors, steps = {}, {}
    for sigma in (0.0, 0.3):
        sol, h = nderegs.solve(
            _terms("SPaRK", sigma),
            diffrax.SPaRK(),
            0.0,
            1.0,
            0.05,
            Y0,
            stepsize_controller=CONTROLLER,
        )
        errors[sigma], steps[sigma] = float(h.error), int(h.num_steps)
        if sigma == 0.0:
            np.testing.assert_allclose(sol.ys[0], ode.ys[0], atol=10 * ATOL)
    # Noise makes the error estimate larger and the solve costlier.
    assert errors[0.0] < errors[0.3] and steps[0.0] < steps[0.3]
    # Without noise the SDE solver's estimate is that of its deterministic part: the
    # same R_E as re-taking the steps with the diffusion removed entirely.
    assert errors[0.0] > 0


@pytest.mark.parametrize("name", list(SOLVERS))
def test_drift_stiffness_of_linear_drift_is_lambda(x64, name):
    solver, _ = SOLVERS[name]
    lam = 3.0
    terms = _terms(name, 0.2, drift=lambda t, y, a: -lam * y)
    _, h = nderegs.solve(
        terms, solver, 0.0, 1.0, 0.05, Y0, stepsize_controller=CONTROLLER, stiffness=True
    )
    np.testing.assert_allclose(float(h.stiffness), lam * 1.0, rtol=1e-8)
    np.testing.assert_allclose(float(h.max_stiffness), lam, rtol=1e-8)
    _, h = nderegs.solve(terms, solver, 0.0, 1.0, 0.05, Y0, stepsize_controller=CONTROLLER)
    assert h.stiffness is None  # not by default: it costs drift evaluations


@pytest.mark.parametrize(
    "name, stiffness", [("SPaRK", False), ("SPaRK", True), ("Heun", True), ("ShARK", True)]
)
def test_nfe_counts_drift_evaluations(x64, name, stiffness):
    solver, _ = SOLVERS[name]
    calls = []

    def drift(t, y, args):
        jax.debug.callback(lambda *_: calls.append(1), t)
        return _drift(t, y, args)

    _, h = nderegs.solve(
        _terms(name, 0.3, drift=drift),
        solver,
        0.0,
        1.0,
        0.05,
        Y0,
        stepsize_controller=CONTROLLER,
        stiffness=stiffness,
        local="unbiased",
        key=jax.random.key(0),
    )
    assert int(h.nfe) + h.local_nfe == len(calls)


def test_local_sampling_on_sdes(x64):
    solver = diffrax.SPaRK()
    terms = _terms("SPaRK", 0.3)
    sol = diffrax.diffeqsolve(
        terms,
        solver,
        0.0,
        1.0,
        0.05,
        Y0,
        stepsize_controller=CONTROLLER,
        saveat=diffrax.SaveAt(t0=True, steps=True),
    )
    n = int(sol.stats["num_accepted_steps"]) + 1
    ts = np.asarray(sol.ts[:n])
    per_step = step_terms(terms, solver, ts, sol.ys[:n], None, RTOL, ATOL)

    def one(key):
        return nderegs.solve(
            terms,
            solver,
            0.0,
            1.0,
            0.05,
            Y0,
            stepsize_controller=CONTROLLER,
            local="unbiased",
            key=key,
        )[1]

    h = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(5), 2000))
    index = np.searchsorted(ts, np.asarray(h.local_t), side="right") - 1
    np.testing.assert_allclose(np.asarray(h.local_error), per_step[index], rtol=1e-7)
    estimate = np.asarray(h.local_weight * h.local_error)
    assert abs(estimate.mean() - per_step.sum()) < 4 * estimate.std() / np.sqrt(len(estimate))


def test_stiffness_requires_a_drift_term():
    bm = diffrax.VirtualBrownianTree(
        0.0, 1.0, tol=1e-3, shape=(2,), key=jax.random.key(0), levy_area=diffrax.SpaceTimeLevyArea
    )
    terms = diffrax.MultiTerm(
        diffrax.ControlTerm(lambda t, y, a: jnp.eye(2), bm),
        diffrax.ControlTerm(lambda t, y, a: jnp.eye(2), bm),
    )
    with pytest.raises(ValueError, match="exactly one ODETerm"):
        nderegs.solve(
            terms,
            diffrax.Heun(),
            0.0,
            1.0,
            0.05,
            Y0,
            stepsize_controller=CONTROLLER,
            stiffness=True,
        )


@pytest.mark.parametrize(
    "noise, diffusion, noise_dim",
    [
        ("diagonal", lambda t, y, a: 0.2 * jnp.tanh(y), None),
        ("general", lambda t, y, a: 0.1 * jnp.outer(jnp.tanh(y), jnp.ones(2)), 2),
    ],
)
def test_neural_sde_layer(noise, diffusion, noise_dim):
    mlp = eqx.nn.MLP(3, 3, 16, 1, activation=jnp.tanh, key=jax.random.key(0))
    sde = nderegs.NeuralSDE(
        lambda t, y, a: mlp(y),
        diffusion,
        noise=noise,
        noise_dim=noise_dim,
        local="unbiased",
        stiffness=True,
    )
    y0 = jnp.ones((4, 3))
    y1, h = sde(y0, key=jax.random.key(1))
    assert y1.shape == (4, 3) and int(h.nfe) > 0 and h.local_error is not None
    again, _ = sde(y0, key=jax.random.key(1))
    np.testing.assert_array_equal(y1, again)  # the key fixes the Brownian path
    paths, _ = sde.sample(y0, key=jax.random.key(2), num_trajectories=6)
    assert paths.shape == (6, 4, 3)
    assert float(jnp.std(paths[:, 0, 0])) > 0  # the trajectories differ

    def loss(f):
        out, h = sde.solve(y0, key=jax.random.key(1))
        return jnp.sum(out.ys**2) + h.local_error + h.stiffness

    grads = eqx.filter_grad(lambda s: loss(s))(sde)
    leaves = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_array))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    with pytest.raises(ValueError, match="needs key"):
        sde(y0, key=None)


def test_neural_sde_layer_steps_with_its_pi_controller(x64):
    key = jax.random.key(3)
    options = dict(batched=False, rtol=1e-3, atol=1e-3, dt0=0.05)
    pi = nderegs.NeuralSDE(_drift, lambda t, y, a: 0.3 * y, pcoeff=0.1, icoeff=0.3, **options)
    y1, h = pi(Y0, key=key)
    ref = diffrax.diffeqsolve(
        pi.terms(Y0, jax.random.split(key)[0]),
        diffrax.SPaRK(),
        0.0,
        1.0,
        0.05,
        Y0,
        stepsize_controller=diffrax.PIDController(rtol=1e-3, atol=1e-3, pcoeff=0.1, icoeff=0.3),
    )
    np.testing.assert_array_equal(y1, ref.ys[0])
    assert int(h.num_steps) == int(ref.stats["num_steps"])
    _, h_i = nderegs.NeuralSDE(_drift, lambda t, y, a: 0.3 * y, **options)(Y0, key=key)
    assert int(h_i.num_steps) != int(h.num_steps)
    with pytest.raises(ValueError, match="icoeff > 0"):
        nderegs.NeuralSDE(_drift, lambda t, y, a: y, icoeff=0.0)
