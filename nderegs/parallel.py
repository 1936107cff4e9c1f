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
devices is the useful work per device, its maximum sets the wall time (every device
steps until the slowest shard is done; a finished shard's steps are discarded).

SDE tasks evaluate with one fixed key, so at evaluation the rows at the same position of
different shards share their Brownian paths (each shard's are as on one device); the
expected metric is unchanged, its noise is not independent across shards. A task's
training `aux["metric"]` is averaged over the shards, which is the batch mean only for a
mean over rows (a ratio such as a masked MSE becomes the mean of the shards' ratios); the
evaluation metrics are exact (sums over rows).

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
import hashlib
import os
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
import numpy as np

#: The name of the mesh axis the batch is split over.
BATCH_AXIS = "batch"


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
    trigger = "parallel.distributed=true" if requested else "JAX_COORDINATOR_ADDRESS is set, so"
    kwargs: dict[str, Any] = {}
    for variable, argument in (
        ("JAX_NUM_PROCESSES", "num_processes"),
        ("JAX_PROCESS_ID", "process_id"),
    ):
        if variable in os.environ:
            try:
                kwargs[argument] = int(os.environ[variable])
            except ValueError:
                raise ValueError(
                    f"{trigger} jax.distributed is initialised, but {variable}="
                    f"{os.environ[variable]!r} is not an integer."
                ) from None
    try:
        jax.distributed.initialize(**kwargs)
    except (ValueError, RuntimeError) as e:
        raise ValueError(
            f"{trigger} jax.distributed.initialize() was called and failed "
            f"({str(e).strip().splitlines()[0]}). Launch one process per host under a cluster "
            "manager jax detects (SLURM, Open MPI, ...), or set JAX_COORDINATOR_ADDRESS="
            "host:port, JAX_NUM_PROCESSES and JAX_PROCESS_ID for each process."
        ) from e
    return True


class ProcessStopped(RuntimeError):
    """Raised on the other processes of a multi-process run when process 0 stopped."""


def raise_on_every_process(error: BaseException | None) -> None:
    """Raise `error` where it happened and, in a multi-process run where process 0 hit
    it (e.g. its run directory exists or is not writable), `ProcessStopped` on every
    other process too, instead of leaving them waiting in the first collective."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        flag = np.int32(error is not None)
        failed = bool(multihost_utils.broadcast_one_to_all(flag))
        if error is None and failed:
            raise ProcessStopped("process 0 stopped before training; its output says why.")
    if error is not None:
        raise error


def check_same_on_every_process(text: str, what: str) -> None:
    """In a multi-process run, a `ValueError` unless every process passes the same
    `text` (e.g. its resolved config)."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    digest = np.frombuffer(hashlib.sha256(text.encode()).digest(), dtype=np.uint8)
    try:
        multihost_utils.assert_equal(digest, f"the processes' {what} differ")
    except AssertionError as e:
        raise ValueError(
            f"the processes of this multi-host run were given different {what}; launch "
            "every process with the same command and files."
        ) from e


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

    def check_batch_size(self, batch_size: int, description: str) -> None:
        """A `ValueError` unless `batch_size` splits evenly over the devices;
        `description` names it in the message (e.g. "optim.batch_size=66")."""
        if batch_size % self.num_devices:
            raise ValueError(
                f"{description} does not split evenly over parallel.devices="
                f"{self.num_devices}: each device solves an equal shard of the batch. Use a "
                f"multiple of {self.num_devices}."
            )

    def replicate(self, tree):
        """Every array of `tree` as a copy on every device (the model, the optimizer
        state, keys, coefficients); every process must pass the same values."""
        if not self.is_parallel:
            return tree
        return jax.tree_util.tree_map(
            lambda x: _global_array(x, self.replicated) if eqx.is_array(x) else x, tree
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
        gradients and every floating-point aux entry are means over the shards;
        `aux["successful"]` is all shards'; `aux["nfe"]` and any other integer or
        boolean aux entry are each device's (leading axis of size num_devices). Aux
        values must be arrays (or None). Each device draws from its own key,
        `fold_in(key, device index)`."""
        if not self.is_parallel:
            return value_and_grad
        per_shard = eqx.filter_vmap(value_and_grad, in_axes=(None, 0, 0, None))

        def run(model, batch, key, coefficients):
            keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(self.num_devices))
            (loss, aux), grads = per_shard(model, self._split(batch), keys, coefficients)
            aux = dict(aux)
            successful = aux.pop("successful")
            loss, aux, grads = jax.tree_util.tree_map(
                lambda x: jnp.mean(x, axis=0) if eqx.is_inexact_array(x) else x,
                (loss, aux, grads),
            )
            aux["successful"] = jnp.all(successful)
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
                out._replace(
                    metric_sum=jnp.sum(out.metric_sum),
                    count=jnp.sum(out.count),
                    successful=jnp.all(out.successful),
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
