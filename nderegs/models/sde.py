"""Neural SDE models of paper 1: the spiral SDE and the SDE classifier."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..core import Heuristics
from ..layers import MakeSDE, NeuralSDE


class CubicDrift(eqx.Module):
    """f(u) = W₂·tanh(W₁·u³): the spiral SDE's drift network."""

    inner: eqx.nn.Linear
    outer: eqx.nn.Linear

    def __init__(self, size: int, width: int, *, key):
        k1, k2 = jax.random.split(key)
        self.inner = eqx.nn.Linear(size, width, key=k1)
        self.outer = eqx.nn.Linear(width, size, key=k2)

    def __call__(self, t, u, args=None):
        return self.outer(jnp.tanh(self.inner(u**3)))


class DiagonalLinearDiffusion(eqx.Module):
    """g(u) = w ⊙ u + b: diagonal noise, linear in the state."""

    weight: Array
    bias: Array

    def __init__(self, size: int, *, scale: float = 0.1):
        # Explicit dtypes: a weak-typed leaf would turn strong after the first update
        # and make the jitted training step compile a second time.
        dtype = jnp.result_type(float)
        self.weight = jnp.full((size,), scale, dtype=dtype)
        self.bias = jnp.zeros((size,), dtype=dtype)

    def __call__(self, t, u, args=None):
        return self.weight * u + self.bias


class TanhMLP(eqx.Module):
    """A time-independent MLP field f(z) with tanh hidden layers."""

    mlp: eqx.nn.MLP

    def __init__(self, size: int, width: int, depth: int, *, key):
        self.mlp = eqx.nn.MLP(size, size, width, depth, activation=jnp.tanh, key=key)

    def __call__(self, t, z, args=None):
        return self.mlp(z)


class LinearDiffusion(eqx.Module):
    """g(z) = W z + b, used as diagonal noise (paper 1's MNIST SDE: Dense 32→32)."""

    linear: eqx.nn.Linear

    def __init__(self, size: int, *, key):
        self.linear = eqx.nn.Linear(size, size, key=key)

    def __call__(self, t, z, args=None):
        return self.linear(z)


def moments(paths: Array) -> tuple[Array, Array]:
    """Mean and (unbiased) variance over the trajectory axis (axis 1 of (T, K, d))."""
    return jnp.mean(paths, axis=1), jnp.var(paths, axis=1, ddof=1)


class SpiralSDE(eqx.Module):
    """du = W₂ tanh(W₁ u³) dt + (w ⊙ u + b) ∘ dW from a fixed u(0)."""

    sde: NeuralSDE

    def __init__(self, size: int, width: int, *, make_sde: MakeSDE = NeuralSDE, key):
        """`make_sde(drift, diffusion)` builds the layer, e.g.
        `functools.partial(NeuralSDE, solver=diffrax.Heun())`."""
        self.sde = make_sde(CubicDrift(size, width, key=key), DiagonalLinearDiffusion(size))

    def for_evaluation(self) -> "SpiralSDE":
        """The model as used at test time (see `NeuralSDE.for_evaluation`)."""
        return eqx.tree_at(lambda m: m.sde, self, self.sde.for_evaluation())

    def __call__(self, y0: Array, times: Array, *, key, num_trajectories: int):
        """Mean and variance at `times` of `num_trajectories` paths (one system), and
        the heuristics of that solve."""
        paths, h = self.sde.sample(y0[None], key=key, num_trajectories=num_trajectories, ts=times)
        mean, var = moments(paths[:, :, 0])
        return mean, var, h


class SDEClassifier(eqx.Module):
    """x → W_in x → SDE (tanh MLP drift, linear diagonal diffusion) → W_out z(t1);
    logits averaged over trajectories."""

    encoder: eqx.nn.Linear
    sde: NeuralSDE
    decoder: eqx.nn.Linear

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        *,
        hidden_size: int,
        vf_width: int,
        vf_depth: int,
        make_sde: MakeSDE = NeuralSDE,
        key,
    ):
        """`make_sde(drift, diffusion)` builds the layer (see `SpiralSDE`)."""
        k_enc, k_drift, k_diff, k_dec = jax.random.split(key, 4)
        self.encoder = eqx.nn.Linear(num_features, hidden_size, key=k_enc)
        drift = TanhMLP(hidden_size, vf_width, vf_depth, key=k_drift)
        diffusion = LinearDiffusion(hidden_size, key=k_diff)
        self.sde = make_sde(drift, diffusion)
        self.decoder = eqx.nn.Linear(hidden_size, num_classes, key=k_dec)

    def for_evaluation(self) -> "SDEClassifier":
        """The model as used at test time (see `NeuralSDE.for_evaluation`)."""
        return eqx.tree_at(lambda m: m.sde, self, self.sde.for_evaluation())

    def __call__(self, x: Array, *, key, num_trajectories: int = 1) -> tuple[Array, Heuristics]:
        z0 = jax.vmap(self.encoder)(x)
        z1, h = self.sde.sample(z0, key=key, num_trajectories=num_trajectories)
        logits = jax.vmap(jax.vmap(self.decoder))(z1)
        return jnp.mean(logits, axis=0), h
