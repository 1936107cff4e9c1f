"""The augmented dynamics of a continuous normalizing flow, (z, Δ)' = (f, −tr ∂f/∂z),
and the integrals of its flow z alone."""

from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..core import AbstractIntegral


class FlowDynamics(eqx.Module):
    r"""The augmented dynamics of a batch of flows,

    $$\frac{d}{dt}\begin{pmatrix} z \\ \Delta \end{pmatrix}
      = \begin{pmatrix} f(t, z) \\ -\operatorname{tr} \partial f / \partial z
      \end{pmatrix},$$

    per sample of `z` (shape `(batch, dim)`, `Δ` shape `(batch,)`). The trace is exact
    (`noise=None`: one Jacobian-vector product per dimension) or Hutchinson's estimate
    $\varepsilon^\top (\partial f/\partial z)\, \varepsilon$ with the noise `ε` of
    the solve, fixed for all its stages and steps (one Jacobian-vector product).
    """

    field: Callable
    noise: Array | None

    def flow(self, t, z: Array, args) -> Array:
        """f(t, z) for every sample of the batch."""
        return jax.vmap(self.field, in_axes=(None, 0, None))(t, z, args)

    def __call__(self, t, state: tuple[Array, Array], args) -> tuple[Array, Array]:
        z, delta = state

        def one(z_i, eps_i):
            def f(x):
                return self.field(t, x, args)

            if eps_i is None:
                basis = jnp.eye(z_i.shape[-1], dtype=z_i.dtype)
                f_i, columns = jax.vmap(lambda v: jax.jvp(f, (z_i,), (v,)), out_axes=(None, 0))(
                    basis
                )
                return f_i, jnp.trace(columns)
            f_i, jvp = jax.jvp(f, (z_i,), (eps_i,))
            return f_i, jnp.vdot(eps_i, jvp)

        if self.noise is None:
            dz, trace = jax.vmap(lambda z_i: one(z_i, None))(z)
        else:
            dz, trace = jax.vmap(one)(z, self.noise)
        return dz, -trace.astype(delta.dtype)


class _AbstractOnFlow(AbstractIntegral):
    """An integral of the flow z alone (not of the log-density channel Δ): RNODE's and
    TayNODE's terms on a CNF, as their papers define them."""

    inner: eqx.AbstractVar[AbstractIntegral]

    @property
    def uses_field_value_only(self) -> bool:
        return self.inner.uses_field_value_only

    def noise(self, key, y0):
        z, _ = y0
        return self.inner.noise(key, z)

    def integrand(self, field, t, y, args, f, noise):
        assert isinstance(field, FlowDynamics)
        z, _ = y
        dz, _ = f
        return self.inner.integrand(field.flow, t, z, args, dz, noise)


class _OnFlow(_AbstractOnFlow):
    inner: AbstractIntegral
    needs_key: ClassVar[bool] = False


class _OnFlowWithNoise(_AbstractOnFlow):
    inner: AbstractIntegral
    needs_key: ClassVar[bool] = True


def on_flow(integral: AbstractIntegral) -> AbstractIntegral:
    """`integral` evaluated on the flow z of a CNF's augmented state (z, Δ)."""
    return _OnFlowWithNoise(integral) if integral.needs_key else _OnFlow(integral)
