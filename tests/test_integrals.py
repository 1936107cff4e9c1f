"""Integral regularizers (RNODE, TayNODE) against analytic answers and nested jvp."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nderegs

TIGHT = diffrax.PIDController(rtol=1e-10, atol=1e-12)


def _decay(lam):
    return diffrax.ODETerm(lambda t, y, args: jax.tree_util.tree_map(lambda x: -lam * x, y))


def _solve(term, y0, integrals, t1=1.5, key=jax.random.key(0), **kwargs):
    return nderegs.solve(
        term,
        diffrax.Tsit5(),
        0.0,
        t1,
        None,
        y0,
        stepsize_controller=kwargs.pop("controller", TIGHT),
        integrals=integrals,
        key=key,
        **kwargs,
    )


@pytest.mark.parametrize("lam", [0.5, 3.0])
def test_linear_decay_matches_analytic_integrals(x64, lam):
    T = 1.5
    y0 = {"a": jnp.array([1.0, -2.0]), "b": jnp.array([[0.5, 0.25]])}
    norm2 = 1.0 + 4.0 + 0.25 + 0.0625
    n = 4
    base = norm2 * (1 - np.exp(-2 * lam * T)) / (2 * lam)
    integrals = (
        nderegs.KineticEnergy(),
        nderegs.JacobianFrobenius(),
        nderegs.TaylorDerivative(order=1),
        nderegs.TaylorDerivative(order=2),
        nderegs.TaylorDerivative(order=3),
    )
    _, h = _solve(_decay(lam), y0, integrals, t1=T)
    expected = [lam**2 * base, lam**2 * n * T, lam**2 * base, lam**4 * base, lam**6 * base]
    np.testing.assert_allclose([float(v) for v in h.integrals], expected, rtol=1e-8)


def test_jacobian_frobenius_of_diagonal_field_is_exact(x64):
    a = jnp.array([0.3, -1.2, 2.0, 0.7])
    term = diffrax.ODETerm(lambda t, y, args: a * jnp.sin(y) + a * (y - jnp.sin(y)))  # = a*y
    for seed in range(3):
        _, h = _solve(
            term, jnp.ones(4), (nderegs.JacobianFrobenius(),), key=jax.random.key(seed), t1=2.0
        )
        np.testing.assert_allclose(float(h.integrals[0]), 2.0 * float(jnp.sum(a**2)), rtol=1e-9)


def test_jacobian_frobenius_of_full_matrix_is_unbiased(x64):
    A = jax.random.normal(jax.random.key(3), (5, 5)) * 0.4
    term = diffrax.ODETerm(lambda t, y, args: A @ y)
    controller = diffrax.PIDController(rtol=1e-6, atol=1e-8)

    def one(key):
        return _solve(
            term,
            jnp.ones(5),
            (nderegs.JacobianFrobenius(),),
            key=key,
            t1=1.0,
            controller=controller,
        )[1].integrals[0]

    samples = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), 4000))
    expected = float(jnp.sum(A**2))
    assert float(jnp.std(samples)) > 0  # it is random for a non-diagonal field
    assert abs(float(jnp.mean(samples)) - expected) < 4 * float(jnp.std(samples)) / np.sqrt(4000)
    assert abs(float(jnp.mean(samples)) - expected) / expected < 0.05


class _Field(eqx.Module):
    mlp: eqx.nn.MLP

    def __call__(self, t, y, args):
        return self.mlp(jnp.concatenate([y, jnp.sin(3 * t).astype(y.dtype)[None]]))


def _mlp_field():
    return _Field(eqx.nn.MLP(4, 3, 16, 2, activation=jnp.tanh, key=jax.random.key(1)))


def _total_derivatives(field, t, y, order):
    """d^k z/dt^k along z' = field(t, z), by nested jax.jvp on (t, z) -> field."""

    def derivative(k):
        if k == 1:
            return lambda s, z: field(s, z, None)
        previous = derivative(k - 1)
        return lambda s, z: jax.jvp(previous, (s, z), (jnp.ones_like(s), field(s, z, None)))[1]

    return derivative(order)(t, y)


@pytest.mark.parametrize("order", [2, 3])
def test_taylor_derivative_matches_nested_jvp(x64, order):
    field = _mlp_field()
    integral = nderegs.TaylorDerivative(order=order)
    for seed in range(3):
        y = jax.random.normal(jax.random.key(seed), (3,))
        t = jnp.asarray(0.37 * seed)
        got = integral.integrand(field, t, y, None, field(t, y, None), None)
        want = jnp.sum(_total_derivatives(field, t, y, order) ** 2)
        np.testing.assert_allclose(float(got), float(want), rtol=1e-10)
    # The integral itself against an independent quadrature of the jvp integrand.
    _, h = _solve(diffrax.ODETerm(field), jnp.array([0.5, -0.3, 0.2]), (integral,), t1=1.0)
    ts = jnp.linspace(0.0, 1.0, 2001)
    ys = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Dopri8(),
        0.0,
        1.0,
        None,
        jnp.array([0.5, -0.3, 0.2]),
        stepsize_controller=TIGHT,
        saveat=diffrax.SaveAt(ts=ts),
    ).ys
    rates = jax.vmap(lambda t, y: jnp.sum(_total_derivatives(field, t, y, order) ** 2))(ts, ys)
    np.testing.assert_allclose(float(h.integrals[0]), float(jnp.trapezoid(rates, ts)), rtol=1e-5)


@pytest.mark.bit_identical
@pytest.mark.parametrize(
    "saveat",
    [
        diffrax.SaveAt(t1=True),
        diffrax.SaveAt(ts=jnp.linspace(0.0, 1.0, 7)),
        diffrax.SaveAt(t0=True, ts=jnp.array([0.5])),
    ],
    ids=["t1", "ts", "t0+ts"],
)
def test_channels_leave_steps_and_trajectory_unchanged(x64, saveat):
    field = _mlp_field()
    term = diffrax.ODETerm(field)
    controller = diffrax.PIDController(rtol=1e-7, atol=1e-7)
    y0 = jnp.array([0.5, -0.3, 0.2])
    plain, h0 = nderegs.solve(
        term, diffrax.Tsit5(), 0.0, 1.0, None, y0, stepsize_controller=controller, saveat=saveat
    )
    ref = diffrax.diffeqsolve(
        term, diffrax.Tsit5(), 0.0, 1.0, None, y0, stepsize_controller=controller, saveat=saveat
    )
    sol, h = nderegs.solve(
        term,
        diffrax.Tsit5(),
        0.0,
        1.0,
        None,
        y0,
        stepsize_controller=controller,
        saveat=saveat,
        integrals=(
            nderegs.KineticEnergy(),
            nderegs.JacobianFrobenius(),
            nderegs.TaylorDerivative(order=2),
        ),
        key=jax.random.key(0),
    )
    np.testing.assert_array_equal(sol.ys, ref.ys)
    np.testing.assert_array_equal(sol.ts, ref.ts)
    for k in ("num_steps", "num_accepted_steps", "num_rejected_steps"):
        assert int(sol.stats[k]) == int(ref.stats[k])
    assert int(h.nfe) == int(h0.nfe)
    np.testing.assert_allclose(float(h.error), float(h0.error), rtol=1e-12)
    np.testing.assert_allclose(float(h.stiffness), float(h0.stiffness), rtol=1e-12)


def test_integrals_differentiable_with_any_adjoint(x64):
    field = _mlp_field()
    y0 = jnp.array([0.5, -0.3, 0.2])
    controller = diffrax.PIDController(rtol=1e-8, atol=1e-8)

    def loss(field, adjoint):
        _, h = nderegs.solve(
            diffrax.ODETerm(field),
            diffrax.Tsit5(),
            0.0,
            1.0,
            None,
            y0,
            stepsize_controller=controller,
            adjoint=adjoint,
            integrals=(nderegs.KineticEnergy(), nderegs.TaylorDerivative(order=2)),
        )
        return h.integrals[0] + h.integrals[1]

    g_rc = eqx.filter_grad(loss)(field, diffrax.RecursiveCheckpointAdjoint())
    g_bs = eqx.filter_grad(loss)(field, diffrax.BacksolveAdjoint())
    for a, b in zip(
        jax.tree_util.tree_leaves(eqx.filter(g_rc, eqx.is_array)),
        jax.tree_util.tree_leaves(eqx.filter(g_bs, eqx.is_array)),
    ):
        assert bool(jnp.all(jnp.isfinite(a)))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_clear_errors():
    relu_field = diffrax.ODETerm(lambda t, y, args: jax.nn.relu(y) - y)
    with pytest.raises(ValueError, match="jet cannot pass through.*relu.*tanh"):
        _solve(relu_field, jnp.ones(2), (nderegs.TaylorDerivative(order=2),))
    with pytest.raises(ValueError, match="JacobianFrobenius draws random noise.*key="):
        _solve(_decay(1.0), jnp.ones(2), (nderegs.JacobianFrobenius(),), key=None)
    with pytest.raises(ValueError, match="steps=, dense=, fn= and subs= are not supported"):
        _solve(
            _decay(1.0), jnp.ones(2), (nderegs.KineticEnergy(),), saveat=diffrax.SaveAt(steps=True)
        )
    with pytest.raises(ValueError, match="order >= 1"):
        nderegs.TaylorDerivative(order=0)
