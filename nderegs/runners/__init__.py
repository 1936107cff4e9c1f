"""Where runs execute: in this process, in a pool of local processes, or as Ray tasks
on a cluster (`make_backend`). Every run is one ordinary training run
(`nderegs.train.train`) with its own run directory; comparisons and sweeps
(`nderegs.report`) hand their runs to a backend.
"""

from .backends import (
    AbstractBackend,
    BACKENDS,
    backends_help,
    InProcess,
    make_backend,
    ProcessPool,
    RayBackend,
)
from .run import execute_run, Job, RunResult, stale_run_problem

__all__ = [
    "AbstractBackend",
    "BACKENDS",
    "backends_help",
    "InProcess",
    "Job",
    "ProcessPool",
    "RayBackend",
    "RunResult",
    "execute_run",
    "make_backend",
    "stale_run_problem",
]
