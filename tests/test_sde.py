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


class _Additive(eqx.Module):
    """g = σ·I: additive noise, so every solver here applies. σ is an array, so solves
    that differ only in σ (or in the Brownian key) share one compilation."""

    sigma: jax.Array

    def __call__(self, t, y, args):
        return self.sigma * jnp.eye(2)


def _terms(name, sigma, drift=_drift, key=0):
    _, levy = SOLVERS[name]
    bm = diffrax.VirtualBrownianTree(
        0.0, 1.0, tol=1e-4, shape=(2,), key=jax.random.key(key), levy_area=levy
    )
    return diffrax.MultiTerm(
        diffrax.ODETerm(drift), diffrax.ControlTerm(_Additive(jnp.asarray(sigma)), bm)
    )


Y0 = jnp.array([1.0, 0.5])


@pytest.mark.bit_identical
@pytest.mark.parametrize("name", list(SOLVERS))
def test_same_path_as_diffeqsolve_and_global_error_of_the_retaken_steps(x64, name):
    """nderegs.solve (with the stiffness estimate on) takes diffeqsolve's steps on the
    same Brownian path, rejections included, and its R_E is the sum of those steps
    re-taken one at a time."""
    solver, _ = SOLVERS[name]
    terms = _terms(name, 0.3)
    kwargs = dict(stepsize_controller=CONTROLLER, saveat=diffrax.SaveAt(t0=True, steps=True))
    ref = diffrax.diffeqsolve(terms, solver, 0.0, 1.0, 0.05, Y0, **kwargs)
    sol, h = nderegs.solve(terms, solver, 0.0, 1.0, 0.05, Y0, stiffness=True, **kwargs)
    np.testing.assert_array_equal(sol.ts, ref.ts)
    np.testing.assert_array_equal(sol.ys, ref.ys)
    for k in ("num_steps", "num_accepted_steps", "num_rejected_steps"):
        assert int(sol.stats[k]) == int(ref.stats[k]), k
    assert int(h.num_rejected_steps) > 0
    n = int(ref.stats["num_accepted_steps"]) + 1
    expected = step_terms(terms, solver, np.asarray(ref.ts[:n]), ref.ys[:n], None, RTOL, ATOL)
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
    solver = diffrax.SPaRK()
    saveat = diffrax.SaveAt(t0=True, steps=True)
    runs = {}
    for sigma, key in ((0.0, 0), (0.0, 1), (0.3, 0)):
        runs[sigma, key] = nderegs.solve(
            _terms("SPaRK", sigma, key=key),
            solver,
            0.0,
            1.0,
            0.05,
            Y0,
            stepsize_controller=CONTROLLER,
            saveat=saveat,
        )
    sol, h = runs[0.0, 0]
    n = int(h.num_accepted_steps) + 1
    np.testing.assert_allclose(sol.ys[n - 1], ode.ys[0], atol=10 * ATOL)
    # Noise makes the error estimate larger and the solve costlier.
    _, noisy = runs[0.3, 0]
    assert float(h.error) < float(noisy.error) and int(h.num_steps) < int(noisy.num_steps)
    # Without noise the SDE solver's estimate is that of its deterministic part: another
    # Brownian path gives the same steps and bitwise the same R_E, and R_E is the sum of
    # the accepted steps re-taken one at a time with the diffusion zero on that other path.
    other_sol, other = runs[0.0, 1]
    assert int(other.num_steps) == int(h.num_steps)
    np.testing.assert_array_equal(other_sol.ts, sol.ts)
    np.testing.assert_array_equal(other.error, h.error)
    retaken = step_terms(
        _terms("SPaRK", 0.0, key=1), solver, np.asarray(sol.ts[:n]), sol.ys[:n], None, RTOL, ATOL
    )
    np.testing.assert_allclose(float(h.error), retaken.sum(), rtol=1e-12)


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


@pytest.mark.bit_identical
@pytest.mark.parametrize("name", list(SOLVERS))
def test_nfe_counts_drift_evaluations(x64, name):
    """`h.nfe` (+ `local_nfe`) is the drift evaluations counted at run time; the drift
    stiffness costs exactly two more per attempted step (rejected ones included), on
    the same path and steps, and two more in the re-taken local step."""
    solver, _ = SOLVERS[name]

    def counting_drift():
        calls = []

        def drift(t, y, args):
            jax.debug.callback(lambda *_: calls.append(1), t)
            return _drift(t, y, args)

        return drift, calls

    calls, h, sol = {}, {}, {}
    for stiffness in (False, True):
        drift, calls[stiffness] = counting_drift()
        sol[stiffness], h[stiffness] = nderegs.solve(
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
        assert int(h[stiffness].nfe) + h[stiffness].local_nfe == len(calls[stiffness])
    np.testing.assert_array_equal(sol[True].ys, sol[False].ys)
    for key in ("num_steps", "num_accepted_steps", "num_rejected_steps"):
        assert int(sol[True].stats[key]) == int(sol[False].stats[key]), key
    steps = int(h[True].num_steps)
    assert int(h[True].num_rejected_steps) > 0
    assert h[True].stiffness is not None and h[False].stiffness is None
    assert int(h[True].nfe) - int(h[False].nfe) == 2 * steps
    assert len(calls[True]) - len(calls[False]) == 2 * (steps + 1)


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


class _Drift(eqx.Module):
    mlp: eqx.nn.MLP

    def __call__(self, t, y, args):
        return self.mlp(y)


class _Diffusion(eqx.Module):
    """g(y) = scale ⊙ tanh(y) (diagonal noise: scale of shape (d,)) or
    scale · tanh(y)[:, None] (general noise: scale of shape (d, m))."""

    scale: jax.Array

    def __call__(self, t, y, args):
        return self.scale * (jnp.tanh(y) if self.scale.ndim == 1 else jnp.tanh(y)[:, None])


@eqx.filter_jit
def _sample_and_derivatives(fields, directions, sde, y0, key):
    """`sde.sample` with (drift, diffusion) = `fields`: the components [Σ paths², R_E,
    stiffness(, local error)], their derivatives along each of the stacked `directions`
    (in the fields' parameters) through the layer, the paths and the heuristics.
    Reverse mode (the Jacobian, contracted), or forward mode with a ForwardMode adjoint."""
    params, static = eqx.partition(fields, eqx.is_inexact_array)

    def components(params):
        drift, diffusion = eqx.combine(params, static)
        layer = eqx.tree_at(lambda s: (s.drift, s.diffusion), sde, (drift, diffusion))
        paths, h = layer.sample(y0, key=key, num_trajectories=3)
        values = [jnp.sum(paths**2), h.error, h.stiffness]
        values = jnp.stack(values + ([h.local_error] if sde.options.local else []))
        return values, (paths, h)

    if isinstance(sde.options.adjoint, diffrax.ForwardMode):
        one = lambda d: jax.jvp(components, (params,), (d,), has_aux=True)
        values, along, (paths, h) = jax.vmap(one, out_axes=(None, 0, None))(directions)
    else:
        with_values = lambda p: (lambda v, aux: (v, (v, aux)))(*components(p))
        jacobian, (values, (paths, h)) = jax.jacrev(with_values, has_aux=True)(params)
        along = jax.vmap(
            lambda d: sum(
                jnp.tensordot(j, x, axes=x.ndim)
                for j, x in zip(jax.tree_util.tree_leaves(jacobian), jax.tree_util.tree_leaves(d))
            )
        )(directions)
    return values, along, paths, h


@pytest.mark.parametrize(
    "noise, noise_dim, adjoint, local",
    [
        ("diagonal", None, diffrax.RecursiveCheckpointAdjoint(), "unbiased"),
        # Forward mode, which compiles in about half the time of reverse mode.
        ("general", 2, diffrax.ForwardMode(), None),
    ],
    ids=["diagonal-reverse", "general-forward"],
)
def test_neural_sde_layer(x64, noise, noise_dim, adjoint, local):
    drift = _Drift(eqx.nn.MLP(3, 3, 16, 1, activation=jnp.tanh, key=jax.random.key(0)))
    scale = jnp.full((3,) if noise == "diagonal" else (3, 2), 0.2, jnp.float64)
    # Tolerances so loose that the controller grows every step by its maximum factor (10):
    # the accepted grid 0, 0.01, 0.11, 1 does not depend on the parameters, so central
    # differences of the adaptive solve differentiate the same frozen grid as the
    # gradients do (with tight tolerances the steps, and so the Brownian increments,
    # move with the parameters). local_gradient="trajectory": the local step starts from
    # the differentiable y(t), so its gradient too is the total derivative that finite
    # differences measure (with "step" its start state is a constant).
    sde = nderegs.NeuralSDE(
        drift,
        _Diffusion(scale),
        noise=noise,
        noise_dim=noise_dim,
        adjoint=adjoint,
        local=local,
        local_gradient="trajectory",
        stiffness=True,
        rtol=1.0,
        atol=1.0,
    )
    fields = (sde.drift, sde.diffusion)
    params, static = eqx.partition(fields, eqx.is_inexact_array)
    # Two random directions: one in the drift's parameters, one in the diffusion's.
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(7), len(leaves))
    random = jax.tree_util.tree_unflatten(
        treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
    )
    zero = jax.tree_util.tree_map(jnp.zeros_like, params)
    directions = [(random[0], zero[1]), (zero[0], random[1])]
    stacked = jax.tree_util.tree_map(lambda *d: jnp.stack(d), *directions)
    y0 = jnp.array([[1.0, 0.5, -0.5], [0.2, -1.0, 1.5]])
    key = jax.random.key(1)

    def run(params, key=key):
        return _sample_and_derivatives(eqx.combine(params, static), stacked, sde, y0, key)

    values, along, paths, h = run(params)
    # Three trajectories per sample, the six states solved as one system.
    assert paths.shape == (3, 2, 3) and float(jnp.std(paths[:, 0, 0])) > 0
    assert int(h.nfe) > 0 and int(h.num_steps) == int(h.num_accepted_steps) == 3
    np.testing.assert_array_equal(run(params)[2], paths)  # the key fixes the path ...
    assert not np.allclose(run(params, jax.random.key(2))[2], paths)  # ... and draws it

    # The derivatives reach the drift's and the diffusion's parameters, and equal central
    # differences along each direction, for every component.
    eps = 1e-5
    for name, direction, derivative in zip(("drift", "diffusion"), directions, along):
        assert np.all(np.asarray(derivative) != 0), f"a component has no gradient in the {name}"
        shifted = {}
        for sign in (1, -1):
            moved = jax.tree_util.tree_map(lambda x, d, s=sign * eps: x + s * d, params, direction)
            shifted[sign], _, _, h_moved = run(moved)
            # The same step grid (and sampled step) as the unperturbed solve.
            assert int(h_moved.num_steps) == int(h.num_steps)
            if local:
                assert float(h_moved.local_dt) == float(h.local_dt)
        differences = (shifted[1] - shifted[-1]) / (2 * eps)
        assert np.all(np.abs(differences) > 1e-6 * np.abs(values)), (name, differences)
        np.testing.assert_allclose(derivative, differences, rtol=1e-6, err_msg=name)
    with pytest.raises(ValueError, match="needs key"):
        sde(y0, key=None)


@pytest.mark.bit_identical
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


def test_pi_controller_rejects_fewer_steps_on_average(x64):
    """docs/guide.md's NeuralSDE example sets pcoeff=0.1, icoeff=0.3 ("PI: fewer rejected steps
    on average"): against the layer's default I controller (pcoeff=0, icoeff=1), SPaRK at
    rtol = atol = 1e-2 on 32 Brownian paths rejects fewer than 0.75 × as many steps in
    total (about half when written), though not fewer on every path."""
    options = dict(batched=False, rtol=1e-2, atol=1e-2)
    diffusion = lambda t, y, a: 0.3 * y
    pi = nderegs.NeuralSDE(_drift, diffusion, pcoeff=0.1, icoeff=0.3, **options)
    default = nderegs.NeuralSDE(_drift, diffusion, **options)
    # The layers' own coefficients, traced: one compiled solve for both controllers.
    coefficients = np.array(
        [
            [c.pcoeff, c.icoeff]
            for c in (pi.options.stepsize_controller(), default.options.stepsize_controller())
        ],
        np.float64,
    )

    def rejected(coefficient, key):
        controller = eqx.tree_at(
            lambda c: (c.pcoeff, c.icoeff), pi.options.stepsize_controller(), tuple(coefficient)
        )
        _, h = nderegs.solve(
            pi.terms(Y0, key),
            pi.options.solver,
            pi.options.t0,
            pi.options.t1,
            pi.options.dt0,
            Y0,
            stepsize_controller=controller,
        )
        return h.num_rejected_steps

    keys = jax.random.split(jax.random.key(0), 32)
    counts = jax.jit(jax.vmap(lambda c: jax.vmap(lambda k: rejected(c, k))(keys)))(coefficients)
    with_pi, with_i = np.asarray(counts).sum(axis=1)
    assert with_pi < 0.75 * with_i, (with_pi, with_i)
