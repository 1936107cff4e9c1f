"""Vector fields of the papers' tasks: time-dependent MLPs, f(t, z) = MLP([z; t])."""

from collections.abc import Callable
from typing import Literal, TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp

from ..layers import time_concat

ACTIVATIONS: dict[str, Callable] = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "softplus": jax.nn.softplus,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "identity": lambda x: x,
}


if TYPE_CHECKING:
    Activation = str
else:
    #: The name of an activation in `ACTIVATIONS` (a `Literal`, for configs).
    Activation = Literal[tuple(ACTIVATIONS)]


def activation(name: str) -> Callable:
    """The activation of `ACTIVATIONS` named `name`; a `ValueError` naming the accepted
    names for anything else (a function included: tasks take names, as configs do)."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        accepted = ", ".join(ACTIVATIONS)
        raise ValueError(f"Unknown activation {name!r}: expected its name, one of: {accepted}.")
    return ACTIVATIONS[name]


class TimeMLP(eqx.Module):
    """f(t, z) = MLP([z; t]) with `depth` hidden layers of `width` units; the output
    goes through `final_activation` (tanh in paper 1's MNIST field, identity for the
    latent ODE dynamics). Depth 0 is one layer, f(t, z) = final_activation(W [z; t] + b)."""

    mlp: eqx.nn.MLP
    # eqx.nn.MLP of depth 0 returns its one layer's output without `final_activation`
    # (equinox 0.13), so the activation of a depth-0 field is applied here.
    single_layer_activation: Callable | None = eqx.field(static=True)

    def __init__(
        self,
        size: int,
        width: int,
        depth: int,
        *,
        activation: Callable = jnp.tanh,
        final_activation: Callable = lambda x: x,
        key,
    ):
        self.mlp = eqx.nn.MLP(
            size + 1,
            size,
            width,
            depth,
            activation=activation,
            final_activation=final_activation,
            key=key,
        )
        self.single_layer_activation = final_activation if depth == 0 else None

    def __call__(self, t, z, args=None):
        out = self.mlp(time_concat(t, z))
        if self.single_layer_activation is not None:
            out = self.single_layer_activation(out)
        return out


class ConcatSquashLinear(eqx.Module):
    """FFJORD's time-dependent linear layer, (W z + b) ⊙ σ(W_g t + b_g) + w_b t: the
    time gates and shifts every output unit."""

    linear: eqx.nn.Linear
    gate: eqx.nn.Linear
    shift: eqx.nn.Linear

    def __init__(self, in_size: int, out_size: int, *, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.linear = eqx.nn.Linear(in_size, out_size, key=k1)
        self.gate = eqx.nn.Linear(1, out_size, key=k2)
        self.shift = eqx.nn.Linear(1, out_size, use_bias=False, key=k3)

    def __call__(self, t, z):
        t = jnp.reshape(jnp.asarray(t, z.dtype), (1,))
        return self.linear(z) * jax.nn.sigmoid(self.gate(t)) + self.shift(t)


class ConcatSquashMLP(eqx.Module):
    """FFJORD's vector field: `depth` hidden concat-squash layers of `width` units with
    `activation` between them, and a concat-squash output layer.

    Reference: Grathwohl et al., "FFJORD: Free-form Continuous Dynamics for Scalable
    Reversible Generative Models", ICLR 2019.
    """

    layers: tuple[ConcatSquashLinear, ...]
    activation: Callable = eqx.field(static=True)

    def __init__(self, size: int, width: int, depth: int, *, activation: Callable = jnp.tanh, key):
        sizes = [size] + [width] * depth + [size]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            ConcatSquashLinear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys)
        )
        self.activation = activation

    def __call__(self, t, z, args=None):
        for layer in self.layers[:-1]:
            z = self.activation(layer(t, z))
        return self.layers[-1](t, z)
