"""Latent ODE for irregularly sampled series (Rubanova et al. 2019; paper 1's
PhysioNet task): a masked GRU reads the observations backwards in time and gives
q(z0) = N(μ, σ²); a neural ODE carries z0 through the observation times; an MLP
decodes each latent state into the observed channels."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..layers import MakeNode, NeuralODE
from .vector_fields import TimeMLP


class LatentODE(eqx.Module):
    gru: eqx.nn.GRUCell
    to_latent: eqx.nn.Linear
    node: NeuralODE
    decoder: eqx.nn.MLP

    def __init__(
        self,
        num_channels: int,
        *,
        latent_size: int,
        encoder_hidden: int,
        vf_width: int,
        vf_depth: int,
        decoder_width: int,
        activation: Callable = jnp.tanh,
        make_node: MakeNode = NeuralODE,
        key,
    ):
        """`make_node(vector_field)` builds the layer, e.g.
        `functools.partial(NeuralODE, rtol=1e-5, atol=1e-5)`."""
        k_gru, k_lat, k_vf, k_dec = jax.random.split(key, 4)
        # Input per time: masked values, the mask, and the gap to the next time.
        self.gru = eqx.nn.GRUCell(2 * num_channels + 1, encoder_hidden, key=k_gru)
        self.to_latent = eqx.nn.Linear(encoder_hidden, 2 * latent_size, key=k_lat)
        field = TimeMLP(latent_size, vf_width, vf_depth, activation=activation, key=k_vf)
        self.node = make_node(field)
        self.decoder = eqx.nn.MLP(
            latent_size, num_channels, decoder_width, 1, activation=jnp.tanh, key=k_dec
        )

    def for_evaluation(self) -> "LatentODE":
        """The model as used at test time (see `NeuralODE.for_evaluation`)."""
        return eqx.tree_at(lambda m: m.node, self, self.node.for_evaluation())

    def encode(
        self,
        values: Float[Array, "times channels"],
        mask: Float[Array, "times channels"],
        times: Float[Array, " times"],
    ) -> tuple[Float[Array, " latent"], Float[Array, " latent"]]:
        """Mean and log-std of q(z0) for one series; times without any observation
        leave the GRU state unchanged."""
        gaps = jnp.diff(times, append=times[-1:])

        def read(hidden, inputs):
            v, m, gap = inputs
            updated = self.gru(jnp.concatenate([v * m, m, gap[None]]), hidden)
            return jnp.where(jnp.any(m > 0), updated, hidden), None

        hidden0 = jnp.zeros(self.gru.hidden_size, values.dtype)
        hidden, _ = jax.lax.scan(read, hidden0, (values, mask, gaps), reverse=True)
        mean, log_std = jnp.split(self.to_latent(hidden), 2)
        return mean, log_std

    def __call__(
        self,
        values: Float[Array, "batch times channels"],
        mask: Float[Array, "batch times channels"],
        times: Float[Array, " times"],
        *,
        key=None,
        sample: bool = True,
    ):
        """Reconstruction at `times` for a batch (its latents solved as one system).
        Returns `(prediction (batch, times, channels), mean, log_std, heuristics)`;
        z0 is sampled when `sample` (needs `key`), else the posterior mean."""
        mean, log_std = jax.vmap(self.encode, in_axes=(0, 0, None))(values, mask, times)
        if sample:
            if key is None:
                raise ValueError("LatentODE(..., sample=True) draws z0: pass key=...")
            key, noise_key = jax.random.split(key)
            z0 = mean + jnp.exp(log_std) * jax.random.normal(noise_key, mean.shape, mean.dtype)
        else:
            z0 = mean
        # The solve's own randomness (local sampling, Hutchinson noise) when training.
        zs, h = self.node(z0, ts=times, key=key)  # (times, batch, latent)
        prediction = jax.vmap(jax.vmap(self.decoder))(jnp.swapaxes(zs, 0, 1))
        return prediction, mean, log_std, h


def gaussian_kl(mean, log_std):
    """KL(N(μ, σ²) ‖ N(0, 1)) summed over the latent dimensions."""
    return 0.5 * jnp.sum(jnp.exp(2 * log_std) + mean**2 - 1 - 2 * log_std, axis=-1)
