"""The papers' neural ODE classifier: x → tanh(W₁[x; t₀]) → NODE → W₂ z(t₁) → logits."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..core import Heuristics
from ..layers import MakeNode, NeuralODE, time_concat
from .vector_fields import TimeMLP


class NODEClassifier(eqx.Module):
    """Downsample the input to the ODE state, integrate a time-dependent MLP on
    [t0, t1] (the batch as one system), classify the end state linearly."""

    encoder: eqx.nn.Linear
    node: NeuralODE
    decoder: eqx.nn.Linear

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        *,
        hidden_size: int,
        vf_width: int,
        vf_depth: int,
        activation: Callable = jnp.tanh,
        field_output_activation: Callable = jnp.tanh,
        make_node: MakeNode = NeuralODE,
        key,
    ):
        """`make_node(vector_field)` builds the layer, e.g.
        `functools.partial(NeuralODE, rtol=1e-8, atol=1e-8)`. `field_output_activation`
        ends the vector field: tanh (paper 1's MNIST field) or the identity (paper 2's
        Dense→tanh→Dense)."""
        k_enc, k_vf, k_dec = jax.random.split(key, 3)
        self.encoder = eqx.nn.Linear(num_features + 1, hidden_size, key=k_enc)
        field = TimeMLP(
            hidden_size,
            vf_width,
            vf_depth,
            activation=activation,
            final_activation=field_output_activation,
            key=k_vf,
        )
        self.node = make_node(field)
        self.decoder = eqx.nn.Linear(hidden_size, num_classes, key=k_dec)

    def for_evaluation(self) -> "NODEClassifier":
        """The model as used at test time (see `NeuralODE.for_evaluation`)."""
        return eqx.tree_at(lambda m: m.node, self, self.node.for_evaluation())

    def __call__(
        self, x: Float[Array, "batch features"], *, key=None, t1=None
    ) -> tuple[Float[Array, "batch classes"], Heuristics]:
        z0 = jnp.tanh(jax.vmap(self.encoder)(time_concat(self.node.options.t0, x)))
        sol, h = self.node.solve(z0, key=key, t1=t1)
        assert sol.ys is not None  # saved at the end time
        logits = jax.vmap(self.decoder)(sol.ys[-1])
        return logits, h
