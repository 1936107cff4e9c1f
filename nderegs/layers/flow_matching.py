r"""Conditional flow matching for a `CNF`: its vector field regressed onto the
velocity of straight paths between data and base samples, with no ODE solve.

In the `CNF`'s orientation data x sits at t0 and the standard normal base z at t1. A
pair (x, z), drawn from a coupling of the data and the base, and s ~ U(0, 1) give the
point and velocity of the straight path between them,

$$x_s = (1 - s)\,x + s\,z, \qquad u = \frac{z - x}{t_1 - t_0}, \qquad
  t = t_0 + s\,(t_1 - t_0),$$

and the loss is the mean over the batch of $\lVert f(t, x_s) - u\rVert^2$ (summed over
the dimensions). Its minimiser over all fields is the marginal velocity
$E[u \mid x_s]$, whose flow carries the data's law to the base's at t1, so the trained
field is a CNF whose `log_prob` and `sample` are those of `nderegs.CNF`.

Couplings: `"independent"` pairs each data point with a fresh base sample (Lipman et
al. 2023; rectified flow's first step, Liu et al. 2023); `"ot"` re-pairs a batch by the
entropic optimal-transport plan between the batch and its base samples, solved by
ott-jax's Sinkhorn (minibatch OT flow matching: Tong et al. 2024; Pooladian et al.
2023), whose straighter paths take fewer solver steps.

References: Lipman, Chen, Ben-Hamu, Nickel, Le, "Flow Matching for Generative
Modeling", ICLR 2023; Liu, Gong, Liu, "Flow Straight and Fast: Learning to Generate and
Transfer Data with Rectified Flow", ICLR 2023; Tong et al., "Improving and generalizing
flow-based generative models with minibatch optimal transport", TMLR 2024; Pooladian et
al., "Multisample Flow Matching: Straightening Flows with Minibatch Couplings", ICML
2023.
"""

from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, PyTree

from .cnf import CNF

Coupling = Literal["independent", "ot"]
COUPLINGS: tuple[Coupling, ...] = ("independent", "ot")

#: The Sinkhorn regularisation of the OT coupling, relative to the mean squared
#: distance of the batch's pairs: small enough that the plan is a permutation where
#: the nearest alternative pairing costs more than about 1e-3 of that (the test's case).
OT_RELATIVE_EPSILON = 1e-3


def ot_pairing(x: Array, z: Array, key: PRNGKeyArray) -> Array:
    """`z` re-ordered so that row i is drawn from the entropic OT plan between the
    points of `x` and of `z` (squared Euclidean cost, uniform weights), conditional on
    x_i: for a plan that is a permutation, exactly the optimal assignment."""
    try:
        from ott.geometry import pointcloud
        from ott.solvers import linear
    except ImportError:
        raise ImportError(
            "The OT coupling of flow matching solves its transport plans with ott-jax, "
            "which is not installed: pip install 'nderegs[flows]' (or pip install ott-jax), "
            "or use the independent coupling."
        ) from None
    x, z = jax.lax.stop_gradient((x, z))
    scale = jnp.mean(jnp.sum((x[:, None] - z[None]) ** 2, -1))
    # ott-jax's own arithmetic relies on standard dtype promotion.
    with jax.numpy_dtype_promotion("standard"):
        geometry = pointcloud.PointCloud(x, z, epsilon=OT_RELATIVE_EPSILON * scale)
        plan = linear.solve(geometry).matrix
    rows = jnp.log(jnp.maximum(plan, jnp.finfo(plan.dtype).tiny))
    return z[jax.random.categorical(key, rows, axis=-1)]


def flow_matching_loss(
    cnf: CNF,
    x: Array,
    key: PRNGKeyArray,
    *,
    coupling: Coupling = "independent",
    args: PyTree = None,
) -> Array:
    """The conditional flow-matching loss of `cnf`'s vector field on the data batch
    `x` `(batch, dim)` (see the module's docstring); `key` draws the base samples, the
    path times and (with `coupling="ot"`) the pairing."""
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {', '.join(COUPLINGS)}; got {coupling!r}.")
    if x.ndim != 2 or x.shape[-1] != cnf.dim:
        raise ValueError(
            f"flow_matching_loss expects a batch of shape (batch, {cnf.dim}); got {x.shape}."
        )
    noise_key, time_key, pair_key = jax.random.split(key, 3)
    z = jax.random.normal(noise_key, x.shape, x.dtype)
    if coupling == "ot":
        z = ot_pairing(x, z, pair_key)
    s = jax.random.uniform(time_key, x.shape[:1], x.dtype)
    t0, t1 = cnf.options.t0, cnf.options.t1
    span = jnp.asarray(t1 - t0, x.dtype)
    t = jnp.asarray(t0, x.dtype) + s * span
    x_s = (1 - s[:, None]) * x + s[:, None] * z
    velocity = jax.vmap(cnf.vector_field, in_axes=(0, 0, None))(t, x_s, args)
    return jnp.mean(jnp.sum((velocity - (z - x) / span) ** 2, -1))
