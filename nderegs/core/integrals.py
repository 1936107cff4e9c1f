"""Integral regularizers ∫ g(t, z(t)) dt carried along the solve as extra state
channels (RNODE's kinetic energy and Jacobian norm, TayNODE's R_K).

The channels are integrated by the same Runge--Kutta steps as the state but take no
part in step-size control: `nderegs.solve` shows the controller only the user's
state, so the steps are exactly those of the unregularized solve.

Normalisation: every integrand is a squared L2 norm *summed* over all components of
the state (for a batch solved as one system, summed over the batch as well); divide by
the batch size for a per-sample mean.
"""

import abc
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
from jax.experimental.jet import jet
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, PyTree


def _squared_norm(tree: PyTree[Array]) -> Array:
    return sum(jnp.sum(x**2) for x in jtu.tree_leaves(tree))  # pyright: ignore[reportReturnType]


class AbstractIntegral(eqx.Module):
    """An integrand g(t, y) whose integral over the solve is reported in
    `Heuristics.integrals`. `noise(key, y0)` draws what the integrand needs once per
    solve (None if nothing; then `needs_key` is False)."""

    needs_key: ClassVar[bool]

    @property
    @abc.abstractmethod
    def uses_field_value_only(self) -> bool:
        """Whether the integrand is a function of f alone (no derivative of the field),
        so that the augmented field's backward pass costs what the field's does (one VJP
        per evaluation) and the backward count of `nderegs.core.backward_nfe` applies."""

    @abc.abstractmethod
    def noise(self, key, y0: PyTree[Array]):
        """What the integrand needs drawn once per solve, or None."""

    @abc.abstractmethod
    def integrand(
        self, field: Callable, t, y: PyTree[Array], args, f: PyTree[Array], noise
    ) -> Array:
        """g(t, y), given the vector field and its value f = field(t, y, args)."""


class KineticEnergy(AbstractIntegral):
    r"""RNODE's kinetic energy $\int_{t_0}^{t_1} \lVert f(t, z(t))\rVert^2 \, dt$.

    Example:
        ```python
        sol, h = nderegs.solve(term, diffrax.Tsit5(), 0.0, 1.0, None, y0, args,
                               stepsize_controller=controller,
                               integrals=(nderegs.KineticEnergy(),))
        kinetic = h.integrals[0]
        ```

    References: Finlay, Jacobsen, Nurbekyan, Oberman, "How to train your neural ODE:
    the world of Jacobian and kinetic regularization", ICML 2020.
    """

    needs_key = False

    @property
    def uses_field_value_only(self) -> bool:
        return True

    def noise(self, key, y0):
        return None

    def integrand(self, field, t, y, args, f, noise):
        return _squared_norm(f)


class JacobianFrobenius(AbstractIntegral):
    r"""RNODE's Jacobian term $\int \lVert \varepsilon^\top \partial f/\partial z\rVert^2 dt$
    with Rademacher $\varepsilon$ (±1, drawn once per solve from the key): a Hutchinson
    estimate, unbiased for $\int \lVert \partial f/\partial z\rVert_F^2 dt$. Needs `key=`.

    References: Finlay et al., ICML 2020 (as `KineticEnergy`); Hutchinson, "A
    stochastic estimator of the trace of the influence matrix for Laplacian smoothing
    splines", 1990.
    """

    needs_key = True

    @property
    def uses_field_value_only(self) -> bool:
        return False  # a VJP of the field in every evaluation

    def noise(self, key, y0):
        leaves, treedef = jtu.tree_flatten(y0)
        keys = jax.random.split(key, len(leaves))
        signs = [jax.random.rademacher(k, x.shape, dtype=x.dtype) for k, x in zip(keys, leaves)]
        return jtu.tree_unflatten(treedef, signs)

    def integrand(self, field, t, y, args, f, noise):
        _, pullback = jax.vjp(lambda z: field(t, z, args), y)
        (eps_jacobian,) = pullback(noise)
        return _squared_norm(eps_jacobian)


class TaylorDerivative(AbstractIntegral):
    """TayNODE's R_K = ∫ ‖d^K z/dt^K‖² dt, the K-th total time derivative of the
    trajectory, by Taylor-mode AD (`jax.experimental.jet`) of the vector field with
    time appended to the state: x = (z, t), x' = (f(t, z), 1).

    Example:
        `integrals=(nderegs.TaylorDerivative(order=2),)` penalizes the acceleration.

    References: Kelly, Bettencourt, Johnson, Duvenaud, "Learning Differential Equations
    that are Easy to Solve", NeurIPS 2020.
    """

    order: int = eqx.field(static=True, default=2)
    needs_key = False

    @property
    def uses_field_value_only(self) -> bool:
        return False  # Taylor-mode derivatives of the field

    def noise(self, key, y0):
        return None

    def __check_init__(self):
        if not (isinstance(self.order, int) and self.order >= 1):
            raise ValueError(f"TaylorDerivative needs an integer order >= 1; got {self.order!r}.")

    def integrand(self, field, t, y, args, f, noise):
        flat_y, unravel = ravel_pytree(y)
        t = jnp.asarray(t, flat_y.dtype)

        def augmented(x):
            z, s = x[:-1], x[-1]
            dz, _ = ravel_pytree(field(s, unravel(z), args))
            return jnp.concatenate([dz, jnp.ones((1,), x.dtype)])

        x0 = jnp.concatenate([flat_y, t[None]])
        flat_f, _ = ravel_pytree(f)
        derivatives = [jnp.concatenate([flat_f, jnp.ones((1,), x0.dtype)])]
        for _ in range(self.order - 1):
            try:
                _, series = jet(augmented, (x0,), (derivatives,))
            except (NotImplementedError, jax.errors.UnexpectedTracerError) as e:
                raise ValueError(
                    "TaylorDerivative: jax.experimental.jet cannot pass through this "
                    f"vector field ({type(e).__name__}: {str(e).splitlines()[0]}). jet "
                    "has no Taylor rule for custom-derivative functions such as "
                    "jax.nn.relu and jax.nn.softplus; use tanh, sigmoid, gelu or swish "
                    "activations, or write the activation with jnp primitives."
                ) from None
            derivatives.append(series[-1])
        return jnp.sum(derivatives[-1][:-1] ** 2)


class AugmentedField(eqx.Module):
    """(y, I)' = (f(t, y), [g_i(t, y)]_i): the state with the integral channels."""

    field: Callable
    integrals: tuple[AbstractIntegral, ...]
    noises: tuple

    def __call__(self, t, state, args):
        y, integral_values = state
        f = self.field(t, y, args)
        rates = [
            integral.integrand(self.field, t, y, args, f, noise)
            for integral, noise in zip(self.integrals, self.noises)
        ]
        return f, jnp.stack(rates).astype(integral_values.dtype)
