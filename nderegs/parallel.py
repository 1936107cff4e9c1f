r"""Data parallelism: a 1-D device mesh over the batch, on one host or many.

Each device solves *its shard of the batch as one system*, with its own adaptive
steps; the loss, the regularizers and the gradients are then averaged across devices.
With $n$ devices and a global batch $B$ split into shards $B_1, \dots, B_n$ of equal
size, one training step uses the gradient

$$g = \frac{1}{n} \sum_{d=1}^{n} \nabla_\theta \big(L_\text{task}(B_d) + \textstyle\sum
\lambda R(B_d)\big),$$

where each $R(B_d)$ (e.g. $R_E$, the sum over the accepted steps of the solve of
$B_d$) is a per-shard quantity. It is *not* the gradient of a one-device step on $B$:
the shards' solves take their own step sizes (the controller's norm runs over the
shard, not the batch), so the numbers of a run depend on the number of devices as they
depend on the batch size. The NFE of a step is therefore per device: its mean over
devices is the work per device, its maximum sets the wall time.

How: the batch, sharded along axis 0 (`NamedSharding`), is reshaped to
(devices, B / devices, ...) and the task's loss is `vmap`ped over the shards inside one
`jit`; XLA partitions the vmapped solve so each device runs its own shard's steps. The
only collective inside the solve is the loop condition (one boolean per step: is any
shard still running); the controller's norms stay per shard. Not letting XLA shard one
whole-batch solve: its norm spans the batch, so such a solve reduces across devices at
every stage of every step, reported far slower than per-device solves (diffrax's issue
tracker). Not `jax.shard_map`: under it, equinox 0.13's checkpointed while loop (the
backward pass of `RecursiveCheckpointAdjoint`) and its run-time checks reject the
sharding metadata of their own carries (diffrax issue #765, equinox PR #1261).

Every process of a multi-host run holds the same data set and the same shuffles (both
are functions of the seed) and puts on its devices only their rows of each batch
(`jax.make_array_from_callback`); the model and the optimizer state are replicated.
"""

from collections.abc import Callable, Sequence
import os
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
import numpy as np

#: The name of the mesh axis the batch is split over.
BATCH_AXIS = "batch"

#: Environment variables that make a run multi-process without `distributed=True`
#: (jax's own coordinator variable and the two that complete it off a cluster manager).
DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize_distributed(requested: bool) -> bool:
    """Call `jax.distributed.initialize()` (once, before any JAX computation) when
    `requested` or when `JAX_COORDINATOR_ADDRESS` is set; returns whether the run is
    multi-process.

    The coordinator, process count and process id come from the cluster manager (SLURM,
    Open MPI, ..., detected by jax) or from `JAX_COORDINATOR_ADDRESS`,
    `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`.
    """
    if jax.distributed.is_initialized():
        return True
    if not requested and "JAX_COORDINATOR_ADDRESS" not in os.environ:
        return False
    kwargs: dict[str, Any] = {}
    if "JAX_NUM_PROCESSES" in os.environ:
        kwargs["num_processes"] = int(os.environ["JAX_NUM_PROCESSES"])
    if "JAX_PROCESS_ID" in os.environ:
        kwargs["process_id"] = int(os.environ["JAX_PROCESS_ID"])
    try:
        jax.distributed.initialize(**kwargs)
    except (ValueError, RuntimeError) as e:
        raise RuntimeError(
            "parallel.distributed=true: jax.distributed.initialize() failed "
            f"({str(e).strip().splitlines()[0]}). Launch one process per host under a cluster "
            "manager jax detects (SLURM, Open MPI, ...), or set JAX_COORDINATOR_ADDRESS="
            "host:port, JAX_NUM_PROCESSES and JAX_PROCESS_ID for each process."
        ) from e
    return True


def resolve_devices(devices: int | Literal["all"]) -> list[Any]:
    """The devices a run uses: the first `devices` of `jax.devices()` (all processes'
    devices in a multi-host run), or all of them."""
    available = jax.devices()
    if devices == "all":
        return available
    if devices > len(available):
        raise ValueError(
            f"parallel.devices={devices}, but only {len(available)} device(s) are available "
            f"({available[0].platform}; across {jax.process_count()} process(es)). Use "
            f"parallel.devices=all or a number up to {len(available)}."
        )
    if jax.process_count() > 1 and devices != len(available):
        raise ValueError(
            f"parallel.devices={devices} in a {jax.process_count()}-process run: a multi-host "
            f"run uses every device of every process (parallel.devices=all, here "
            f"{len(available)})."
        )
    return available[:devices]


class DataParallel:
    """Data parallelism over `devices` (one mesh axis, `BATCH_AXIS`). With one device
    every method is the identity and the step functions are the plain ones, so a
    one-device run is exactly the run without it.

    Example:
        ```python
        parallel = DataParallel(jax.devices())
        model = parallel.replicate(model)
        grad_fn = parallel.mean_over_shards(eqx.filter_value_and_grad(task.loss, has_aux=True))
        (loss, aux), grads = eqx.filter_jit(grad_fn)(model, parallel.shard(batch), key, coefs)
        aux["nfe"]  # shape (num_devices,): each device's solve
        ```
    """

    def __init__(self, devices: Sequence[Any]):
        if not devices:
            raise ValueError("DataParallel needs at least one device.")
        self.devices = tuple(devices)
        self.mesh = jax.make_mesh(
            (len(self.devices),),
            (BATCH_AXIS,),
            axis_types=(jax.sharding.AxisType.Auto,),
            devices=self.devices,
        )
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.batch_sharded = NamedSharding(self.mesh, PartitionSpec(BATCH_AXIS))

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    @property
    def is_parallel(self) -> bool:
        return self.num_devices > 1

    def check_batch_size(self, batch_size: int, what: str) -> None:
        """A `ValueError` unless `batch_size` splits evenly over the devices."""
        if batch_size % self.num_devices:
            raise ValueError(
                f"{what}={batch_size} does not split evenly over parallel.devices="
                f"{self.num_devices}: each device solves an equal shard of the batch. Use a "
                f"multiple of {self.num_devices}."
            )

    def replicate(self, tree):
        """Every array of `tree` as a copy on every device (the model, the optimizer
        state, keys, coefficients); every process must pass the same values."""
        if not self.is_parallel:
            return tree
        return jax.tree_util.tree_map(
            lambda x: _global_array(x, self.replicated) if eqx.is_array_like(x) else x, tree
        )

    def shard(self, batch: tuple[np.ndarray, ...]) -> tuple:
        """A batch (the whole global batch, the same on every process) split along axis 0
        over the devices; each process transfers only its devices' rows."""
        if not self.is_parallel:
            return batch
        return tuple(_global_array(x, self.batch_sharded) for x in batch)

    def mean_over_shards(self, value_and_grad: Callable) -> Callable:
        """`value_and_grad(model, batch, key, coefficients) -> ((loss, aux), grads)` run
        on each device's shard of `batch`, averaged across devices: the loss, the
        gradients and every aux entry are means over the shards, except `aux["nfe"]`
        (each device's, shape (num_devices,)) and `aux["successful"]` (all shards').
        Each device draws from its own key, `fold_in(key, device index)`."""
        if not self.is_parallel:
            return value_and_grad
        per_shard = eqx.filter_vmap(value_and_grad, in_axes=(None, 0, 0, None))

        def run(model, batch, key, coefficients):
            keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(self.num_devices))
            (loss, aux), grads = per_shard(model, self._split(batch), keys, coefficients)
            aux = dict(aux)
            nfe, successful = aux.pop("nfe", None), aux.pop("successful")
            loss, aux, grads = jax.tree_util.tree_map(
                lambda x: jnp.mean(x, axis=0), (loss, aux, grads)
            )
            aux.update(nfe=nfe, successful=jnp.all(successful))
            return self._replicated_result(((loss, aux), grads))

        return run

    def sum_over_shards(self, evaluate: Callable) -> Callable:
        """`evaluate(model, batch) -> Evaluation` (metric summed over the batch) run on
        each device's shard: metric sums and counts added across devices, `nfe` each
        device's (shape (num_devices,)), `successful` all shards'."""
        if not self.is_parallel:
            return evaluate
        per_shard = eqx.filter_vmap(evaluate, in_axes=(None, 0))

        def run(model, batch):
            out = per_shard(model, self._split(batch))
            return self._replicated_result(
                type(out)(
                    jnp.sum(out.metric_sum), jnp.sum(out.count), out.nfe, jnp.all(out.successful)
                )
            )

        return run

    def _replicated_result(self, tree):
        # On every device (so every process can read it, e.g. the per-device NFE).
        return jax.lax.with_sharding_constraint(tree, self.replicated)

    def _split(self, batch):
        # (B, ...) sharded over the devices -> (devices, B / devices, ...), one shard
        # per device: vmapped, each shard is solved as its own system.
        shards = jax.tree_util.tree_map(
            lambda x: x.reshape(self.num_devices, x.shape[0] // self.num_devices, *x.shape[1:]),
            batch,
        )
        return jax.lax.with_sharding_constraint(shards, self.batch_sharded)


def _global_array(x, sharding: NamedSharding) -> jax.Array:
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(x)
        data = _global_array(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=impl)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
