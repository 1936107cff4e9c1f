"""NeuralODE layer and the task models."""

import dataclasses
import warnings

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nderegs
from nderegs.config import load_config
from nderegs.layers import NeuralODE
from nderegs.models import gaussian_kl, LatentODE, NODEClassifier, TimeMLP


def _field(size=3, key=0):
    return TimeMLP(size, 8, 1, key=jax.random.key(key))


@pytest.mark.bit_identical
def test_neural_ode_solves_the_batch_as_one_system(x64):
    field = _field()
    layer = NeuralODE(field, t0=0.0, t1=1.5, rtol=1e-8, atol=1e-8)
    y0 = jax.random.normal(jax.random.key(1), (4, 3))
    y1, h = layer(y0)
    batched = lambda t, y, args: jax.vmap(field, in_axes=(None, 0))(t, y)
    ref = diffrax.diffeqsolve(
        diffrax.ODETerm(batched),
        diffrax.Tsit5(),
        0.0,
        1.5,
        None,
        y0,
        stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8),
    )
    np.testing.assert_array_equal(y1, ref.ys[0])
    assert int(h.num_steps) == int(ref.stats["num_steps"])
    # Per-sample solves agree within tolerance (a different step grid).
    alone = NeuralODE(field, t0=0.0, t1=1.5, rtol=1e-8, atol=1e-8, batched=False)
    np.testing.assert_allclose(alone(y0[2])[0], y1[2], rtol=1e-6, atol=1e-7)


def test_neural_ode_saves_at_ts_and_checks_input():
    layer = NeuralODE(_field(), local="biased")
    ts = jnp.linspace(0.0, 1.0, 5)
    ys, h = layer(jnp.ones((2, 3)), ts=ts, key=jax.random.key(0))
    assert ys.shape == (5, 2, 3) and h.local_error is not None
    with pytest.raises(ValueError, match="needs key="):
        layer(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"shape \(batch, \.\.\.\)"):
        NeuralODE(_field())(jnp.ones(()))
    # Under jax.vmap the batch axis is gone: the error says to use batched=False.
    with pytest.raises(ValueError, match=r"under jax.vmap.*batched=False"):
        jax.vmap(NeuralODE(_field()))(jnp.ones((2, 3)))
    ys, _ = jax.vmap(NeuralODE(_field(), batched=False))(jnp.ones((2, 3)))
    assert ys.shape == (2, 3)
    with pytest.raises(ValueError, match="t0 != t1"):
        NeuralODE(_field(), t0=1.0, t1=1.0)


def test_parameters_get_gradients_with_backsolve_and_local():
    layer = NeuralODE(_field(), adjoint=diffrax.BacksolveAdjoint(), local="unbiased")

    def loss(layer):
        y1, h = layer(jnp.ones((2, 3)), key=jax.random.key(0))
        return jnp.sum(y1**2) + h.local_error

    grads = eqx.filter_grad(loss)(layer)
    leaves = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_array))
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert sum(float(jnp.abs(g).sum()) for g in leaves) > 0
    # The adjoint seminorm (the config's `seminorm: true`) steps the adjoint solve
    # differently, to the same gradient within the tolerances.
    config = load_config(
        None, ["method=local-error", "solver.adjoint={name: backsolve, seminorm: true}"]
    )
    seminorm = config.solver.adjoint.build(layer.options.stepsize_controller())
    built = config.build()[0].make_node.keywords["options"].adjoint  # the config's layers
    assert built.kwargs["stepsize_controller"].norm is diffrax.adjoint_rms_seminorm
    with_seminorm = eqx.filter_grad(loss)(eqx.tree_at(lambda m: m.options.adjoint, layer, seminorm))
    for a, b in zip(leaves, jax.tree_util.tree_leaves(eqx.filter(with_seminorm, eqx.is_array))):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-6)


def test_classifier_shapes_and_heuristics():
    model = NODEClassifier(64, 10, hidden_size=8, vf_width=8, vf_depth=1, key=jax.random.key(0))
    logits, h = model(jnp.ones((5, 64)))
    assert logits.shape == (5, 10)
    assert isinstance(h, nderegs.Heuristics) and int(h.nfe) > 0


def test_latent_ode_ignores_unobserved_values():
    model = LatentODE(
        2,
        latent_size=3,
        encoder_hidden=5,
        vf_width=6,
        vf_depth=1,
        decoder_width=4,
        key=jax.random.key(0),
    )
    times = jnp.linspace(0.0, 1.0, 6)
    values = jax.random.normal(jax.random.key(1), (3, 6, 2))
    mask = (jax.random.uniform(jax.random.key(2), (3, 6, 2)) < 0.5).astype(jnp.float32)
    mask = mask.at[:, 0, 0].set(1.0)
    pred, mean, log_std, h = model(values, mask, times, sample=False)
    assert pred.shape == (3, 6, 2) and mean.shape == (3, 3)
    # Changing values where nothing is observed changes nothing.
    noisy = values + 100.0 * (1 - mask)
    pred2, mean2, _, _ = model(noisy, mask, times, sample=False)
    np.testing.assert_allclose(mean2, mean, rtol=1e-6)
    np.testing.assert_allclose(pred2, pred, rtol=1e-6)


def test_gaussian_kl_matches_numerical_integral(x64):
    mean, log_std = jnp.array([0.3, -1.2]), jnp.array([-0.4, 0.25])
    x = jnp.linspace(-12, 12, 200001)
    total = 0.0
    for m, s in zip(mean, jnp.exp(log_std)):
        q = jnp.exp(-0.5 * ((x - m) / s) ** 2) / (s * jnp.sqrt(2 * jnp.pi))
        p = jnp.exp(-0.5 * x**2) / jnp.sqrt(2 * jnp.pi)
        total += float(jnp.trapezoid(q * (jnp.log(q) - jnp.log(p)), x))
    np.testing.assert_allclose(float(gaussian_kl(mean, log_std)), total, rtol=1e-6)


def test_steer_end_times_are_uniform_and_evaluation_uses_t1():
    layer = NeuralODE(_field(), t0=0.0, t1=2.0, steer=0.5)
    ends = jax.vmap(layer.sample_end_time)(jax.random.split(jax.random.key(0), 20000))
    assert float(ends.min()) >= 1.5 and float(ends.max()) <= 2.5
    assert float(ends.min()) < 1.51 and float(ends.max()) > 2.49
    np.testing.assert_allclose(float(ends.mean()), 2.0, atol=4 * 1 / np.sqrt(12 * 20000))
    np.testing.assert_allclose(float(ends.var()), 1.0 / 12, rtol=0.05)
    # Training (a key): the solve ends at a sampled time; evaluation (no key): at t1.
    sol, _ = layer.solve(jnp.ones((2, 3)), key=jax.random.key(3))
    expected = layer.sample_end_time(jax.random.split(jax.random.key(3))[1])
    np.testing.assert_allclose(float(sol.ts[-1]), float(expected), rtol=1e-6)
    sol, _ = layer.solve(jnp.ones((2, 3)))
    assert float(sol.ts[-1]) == 2.0
    with pytest.raises(ValueError, match="steer=b.*0 <= b < \\|t1 - t0\\| = 2.0"):
        NeuralODE(_field(), t0=0.0, t1=2.0, steer=2.0)


@pytest.mark.bit_identical
def test_neural_ode_controller_coefficients_and_checks(x64):
    field = _field()
    y0 = jax.random.normal(jax.random.key(1), (4, 3))
    layer = NeuralODE(field, rtol=1e-6, atol=1e-6, pcoeff=0.3, icoeff=0.4)
    _, h = layer(y0)
    batched = lambda t, y, args: jax.vmap(field, in_axes=(None, 0))(t, y)
    ref = diffrax.diffeqsolve(
        diffrax.ODETerm(batched),
        diffrax.Tsit5(),
        0.0,
        1.0,
        None,
        y0,
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6, pcoeff=0.3, icoeff=0.4),
    )
    assert int(h.num_steps) == int(ref.stats["num_steps"])
    with pytest.raises(ValueError, match=r"rtol > 0 and atol > 0.*pcoeff >= 0"):
        NeuralODE(field, rtol=0.0, pcoeff=-1.0)
    # One SolveOptions for every layer: keywords replace its fields, the layers' own
    # defaults apply only without it, and a keyword that is no setting names the settings.
    shared = nderegs.SolveOptions(rtol=1e-6, atol=1e-6, pcoeff=0.3, icoeff=0.4)
    assert NeuralODE(field, options=shared).options == layer.options
    loose = NeuralODE(field, options=shared, rtol=1e-3)
    assert (loose.options.rtol, loose.options.atol, loose.options.pcoeff) == (1e-3, 1e-6, 0.3)
    sde = nderegs.NeuralSDE(field, field)
    assert (type(sde.options.solver), sde.options.rtol, sde.options.dt0) == (
        diffrax.SPaRK,
        1e-3,
        0.01,
    )
    sde_options = dataclasses.replace(shared, solver=diffrax.SPaRK(), dt0=0.01)
    assert nderegs.NeuralSDE(field, field, options=sde_options).options == sde_options
    with pytest.raises(ValueError, match="NeuralSDE needs an SDE solver .* got Tsit5"):
        nderegs.NeuralSDE(field, field, options=shared)  # an ODE's options
    assert nderegs.CNF(field, dim=3).options.rtol == 1e-5
    with pytest.raises(TypeError, match="rtl; the solve settings a layer takes are: t0, t1"):
        NeuralODE(field, rtl=1e-3)


def test_a_field_whose_parameters_a_gradient_cannot_reach_is_warned_about():
    """`lambda t, y, args: mlp(y)` hides mlp's parameters from eqx.filter_grad: the
    layer warns (at trace time); a Module field, or the network passed as args, does
    not. Traced only (eqx.filter_eval_shape): nothing is compiled."""
    key = jax.random.key(0)
    mlp = eqx.nn.MLP(2, 2, 8, 1, key=key)
    y0 = jnp.ones((4, 2))
    closure = NeuralODE(lambda t, y, args: mlp(y))
    with pytest.warns(nderegs.ParameterlessFieldWarning, match="vector_field .*closing over"):
        eqx.filter_eval_shape(closure, y0)
    # The warning tells the truth: this layer has no gradient leaf at all.
    with pytest.warns(nderegs.ParameterlessFieldWarning):
        grads = eqx.filter_eval_shape(eqx.filter_grad(lambda m: jnp.sum(m(y0)[0])), closure)
    assert jax.tree_util.tree_leaves(grads) == []
    sde = nderegs.NeuralSDE(lambda t, y, args: -y, lambda t, y, args: jnp.ones_like(y))
    with pytest.warns(nderegs.ParameterlessFieldWarning, match="drift and diffusion"):
        eqx.filter_eval_shape(lambda y: sde(y, key=key), y0)
    # Each field on its own: a trainable drift does not excuse a closure diffusion.
    sde = nderegs.NeuralSDE(TimeMLP(2, 8, 1, key=key), lambda t, y, args: mlp(y))
    with pytest.warns(nderegs.ParameterlessFieldWarning, match="NeuralSDE: diffusion \\("):
        eqx.filter_eval_shape(lambda y: sde(y, key=key), y0)
    cnf = nderegs.CNF(lambda t, z, args: mlp(z), dim=2)
    with pytest.warns(nderegs.ParameterlessFieldWarning, match="CNF"):
        eqx.filter_eval_shape(cnf.log_prob, y0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", nderegs.ParameterlessFieldWarning)
        eqx.filter_eval_shape(NeuralODE(TimeMLP(2, 8, 1, key=key)), y0)
        by_args = NeuralODE(lambda t, y, net: net(y))
        eqx.filter_eval_shape(lambda y: by_args(y, args=mlp), y0)


@pytest.mark.parametrize("activation", [jnp.tanh, lambda x: x])
def test_a_depth_zero_field_is_one_layer_with_its_output_activation(activation):
    # Paper 1's MNIST field, f(t, z) = tanh(W [z; t] + b), computed from the weights.
    field = TimeMLP(4, 7, 0, final_activation=activation, key=jax.random.key(3))
    (layer,) = field.mlp.layers
    t, z = 0.3, jnp.array([0.5, -1.0, 2.0, 0.25])
    expected = activation(layer.weight @ jnp.append(z, t) + layer.bias)
    assert jnp.allclose(field(t, z), expected, atol=1e-6)
    # depth >= 1 leaves the activation to the MLP (applied once, not twice)
    deep = TimeMLP(4, 7, 1, final_activation=jnp.tanh, key=jax.random.key(3))
    first, last = deep.mlp.layers
    hidden = jnp.tanh(first.weight @ jnp.append(z, t) + first.bias)
    assert jnp.allclose(deep(t, z), jnp.tanh(last.weight @ hidden + last.bias), atol=1e-6)
