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
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown activation {name!r}; accepted: {', '.join(ACTIVATIONS)}."
        ) from None


class TimeMLP(eqx.Module):
    """f(t, z) = MLP([z; t]) with `depth` hidden layers of `width` units; the output
    goes through `final_activation` (tanh in paper 1's MNIST field, identity for the
    latent ODE dynamics)."""

    mlp: eqx.nn.MLP

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

    def __call__(self, t, z, args=None):
        return self.mlp(time_concat(t, z))
