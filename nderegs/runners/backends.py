"""Backends: where the runs of a comparison or sweep execute.

- `InProcess`: one after the other in this process (`--workers 1`, the default).
- `ProcessPool`: `--workers K` processes on this machine (spawned, so each has its own
  JAX runtime), training straight into the run directories.
- `RayBackend`: each run a Ray task with its resource request (CPUs, GPUs per trial),
  on a local Ray instance or a cluster (`--address`). The task trains in a directory of
  its own on whichever node runs it and returns the run's files, which the driver
  writes: no shared file system is needed.

Each yields the `RunResult` of every job as it finishes (completion order). A backend
is added by its class and its entry in `BACKENDS` (which `make_backend` and the CLI's
`--backend` read).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import as_completed, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
import math
import multiprocessing
import os
from typing import Any

from ..config import ConfigError
from .run import FAILED, Job, read_files, run_job, RunResult, write_files


class AbstractBackend(abc.ABC):
    """Executes jobs; `run` yields each job's result as it finishes."""

    @abc.abstractmethod
    def run(self, jobs: Sequence[Job]) -> Iterator[RunResult]:
        """Execute `jobs`, yielding their results in completion order."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the backend's workers."""


def _crashed(job: Job, error: BaseException) -> RunResult:
    # The worker itself died (killed, out of memory): the run failed, the others go on.
    message = f"the worker running it failed: {type(error).__name__}: {error}".strip()
    return RunResult(job.label, job.config.seed, job.run_dir, FAILED, error=message)


class InProcess(AbstractBackend):
    """The runs one after the other, in this process."""

    def run(self, jobs: Sequence[Job]) -> Iterator[RunResult]:
        for job in jobs:
            yield run_job(job)[0]

    def close(self) -> None:
        pass


def _worker_setup() -> None:
    # Several JAX processes share the machine's accelerators: none may take 75 % of
    # their memory up front (jax's default).
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


class ProcessPool(AbstractBackend):
    """`workers` spawned processes on this machine. If a worker process dies (killed,
    out of memory), the pool is restarted and the runs it held are tried once more
    (they resume from their checkpoints); a run whose worker dies twice is recorded as
    failed. Ctrl-C cancels the runs not yet started."""

    def __init__(self, workers: int):
        self.workers = workers

    def run(self, jobs: Sequence[Job]) -> Iterator[RunResult]:
        context = multiprocessing.get_context("spawn")
        attempts = {id(job): 0 for job in jobs}
        pending = list(jobs)
        while pending:
            pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=context, initializer=_worker_setup
            )
            broken: list[Job] = []
            try:
                futures = {pool.submit(run_job, job): job for job in pending}
                for future in as_completed(futures):
                    job = futures[future]
                    try:
                        yield future.result()[0]
                    except BrokenProcessPool as error:
                        attempts[id(job)] += 1
                        if attempts[id(job)] >= 2:
                            yield _crashed(job, error)
                        else:
                            broken.append(job)
                    except Exception as error:
                        yield _crashed(job, error)
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
            pending = broken

    def close(self) -> None:
        pass  # each pool is shut down when `run` finishes


def _ray_task(job: Job):
    import ray

    return run_job(job, ship=True, node=ray.get_runtime_context().get_node_id())


class RayBackend(AbstractBackend):
    """A Ray instance or cluster (pip install 'nderegs[ray]'), each run a Ray task.

    Each run requests `cpus_per_trial` CPUs and `gpus_per_trial` GPUs.

    Without `address` a new local Ray instance is started with `workers ×
    cpus_per_trial` CPUs (no dashboard; Ray finds the GPUs) and shut down by `close`;
    with one (``auto`` or ``ray://host:10001``) the runs go to that cluster, whose nodes
    need nderegs installed and the data paths the config names.

    A task returns its run's files when it ends: a trial interrupted on Ray starts again
    from its last state on the driver (its start, or the checkpoint a local run left).
    """

    def __init__(
        self,
        address: str | None = None,
        workers: int = 1,
        cpus_per_trial: float = 1,
        gpus_per_trial: float = 0,
    ):
        try:
            import ray
        except ImportError:
            raise ImportError(
                "--backend ray needs Ray: pip install 'nderegs[ray]' (or use --backend local)."
            ) from None
        self._ray: Any = ray
        self._started = not ray.is_initialized()
        if self._started:
            options: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING"}
            if address is None:
                # A new instance ("local"), not one RAY_ADDRESS or a running cluster names.
                address = "local"
                options["num_cpus"] = max(1, math.ceil(workers * cpus_per_trial))
            try:
                ray.init(address=address, **options)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise ConfigError(
                    f"--backend ray could not start or reach Ray at --address {address}: "
                    f"{str(e).strip().splitlines()[0]}"
                ) from None
        self._task = ray.remote(
            num_cpus=cpus_per_trial,
            num_gpus=gpus_per_trial,
            runtime_env={"env_vars": {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}},
        )(_ray_task)

    def run(self, jobs: Sequence[Job]) -> Iterator[RunResult]:
        ray = self._ray
        pending = {}
        for job in jobs:
            # A partly trained run travels with its files, so the task resumes it.
            shipped = Job(job.config, job.run_dir, job.label, read_files(job.run_dir))
            pending[self._task.remote(shipped)] = job
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    result, files = ray.get(ref)
                except Exception as error:  # the task's process died
                    yield _crashed(job, error)
                    continue
                write_files(job.run_dir, files)
                yield result

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def _local(
    *, workers: int, address: str | None, cpus_per_trial: float, gpus_per_trial: float
) -> AbstractBackend:
    """This machine: this process for one worker, else a pool of `workers` processes."""
    if address is not None:
        raise ConfigError("--address is for --backend ray (a Ray cluster's address)")
    return InProcess() if workers == 1 else ProcessPool(workers)


#: `--backend` name -> what makes that backend from `make_backend`'s keyword options
#: (the first line of its docstring is its `--backend` help).
BACKENDS: dict[str, Callable[..., AbstractBackend]] = {"local": _local, "ray": RayBackend}


def backends_help() -> str:
    """Each backend's name and the first line of its docstring."""

    def summary(factory: Callable[..., AbstractBackend]) -> str:
        lines = (factory.__doc__ or "").strip().splitlines()
        return lines[0].rstrip(".") if lines else "(undocumented)"

    return "; ".join(f"{name}: {summary(factory)}" for name, factory in BACKENDS.items())


def make_backend(
    name: str = "local",
    *,
    workers: int = 1,
    address: str | None = None,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
) -> AbstractBackend:
    """The backend `--backend name --workers K --address A` describes."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; accepted: {', '.join(BACKENDS)}")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if not cpus_per_trial > 0 or not gpus_per_trial >= 0:
        raise ConfigError(
            f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0, got {cpus_per_trial} "
            f"and {gpus_per_trial}"
        )
    return BACKENDS[name](
        workers=workers,
        address=address,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
    )
