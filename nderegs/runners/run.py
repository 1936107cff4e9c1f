"""One run: train it (or read it back, or resume it), never raising for a failed run.

A run whose `summary.json` exists is not trained again (its summary is read back); one
with a checkpoint but no summary is continued with `train(..., resume=True)`; any
exception is recorded as the run's failure. `run_job` is what a worker executes: in
this process, in a pool process, or in a Ray task, where it trains in a directory of
its own and returns the run's files, which the driver writes (no shared file system).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import os
from pathlib import Path
import socket
import tempfile

from ..config import config_changes, ConfigError, ExperimentConfig
from ..train import RunDirectory, train

#: `RunResult.status` values.
TRAINED, RESUMED, SKIPPED, READ, FAILED = "trained", "resumed", "skipped", "read", "failed"


@dataclass(frozen=True)
class RunResult:
    """The outcome of one run.

    `status` is "trained" (from scratch), "resumed" (continued from a checkpoint),
    "skipped" (asked to run, but its summary.json was already there), "read" (not asked to
    run: a finished run read back, by `nderegs.report.read_comparison` or `collect_runs`)
    or "failed" (then `error` holds the message and `summary` is None). `method` is the
    run's row label.
    """

    method: str
    seed: int
    run_dir: Path
    status: str
    summary: dict | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.summary is not None


@dataclass(frozen=True)
class Job:
    """A run to execute: its resolved config, its run directory (on the driver) and its
    row label (e.g. `error` or `local-error[solver.adjoint=backsolve]`)."""

    config: ExperimentConfig
    run_dir: Path
    label: str
    #: The run directory's files (name -> bytes) when it travels to a worker elsewhere.
    files: dict[str, bytes] = field(default_factory=dict)


#: Settings that change how a run reports, not what it trains: no clash when they differ.
REPORTING_KEYS = ("train.progress", "output_dir", "tracking")


def stale_run_problem(run_dir: Path, config: ExperimentConfig) -> str | None:
    """Why an existing run directory cannot be reused for `config` (None if it can)."""
    if not RunDirectory(run_dir).has_config:
        return None
    try:
        changes = config_changes(RunDirectory(run_dir).read_config(), config)
        # How a run reports (progress bar, where its parent folder is) is not a clash.
        differences = [key for key in changes if key not in REPORTING_KEYS]
    except ConfigError as e:
        return f"{RunDirectory(run_dir).config_file} cannot be read back: {e}"
    if differences:
        return (
            f"{run_dir} holds a run with a different configuration "
            f"({', '.join(differences)}); choose another --output-dir or delete it"
        )
    return None


def _failure_message(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def execute_run(config: ExperimentConfig, run_dir: Path, label: str | None = None) -> RunResult:
    """Train one run (or read it back, or resume it); never raises for a failed run.
    `label` names the run's row (default: its method), e.g. a `METHOD[key=value]` entry."""
    method, seed = label or config.method, config.seed
    run = RunDirectory(run_dir)
    problem = stale_run_problem(run_dir, config) if run.is_started else None
    if problem is not None:
        return RunResult(method, seed, run_dir, FAILED, error=problem)
    summary = run.read_summary()
    if summary is not None:
        return RunResult(method, seed, run_dir, SKIPPED, summary=summary)
    resume = run.has_checkpoint
    try:
        summary = train(config, run_dir=run_dir, resume=resume)
    except Exception as error:  # any failure of one run is reported, the others go on
        return RunResult(method, seed, run_dir, FAILED, error=_failure_message(error))
    return RunResult(method, seed, run_dir, RESUMED if resume else TRAINED, summary=summary)


def _record_worker(result: RunResult, node: str | None) -> RunResult:
    """The worker that trained the run, in its summary (and summary.json)."""
    if result.status not in (TRAINED, RESUMED) or result.summary is None:
        return result
    worker = {"pid": os.getpid(), "host": socket.gethostname(), "node": node}
    summary = {**result.summary, "worker": worker}
    RunDirectory(result.run_dir).write_summary(summary)
    return RunResult(result.method, result.seed, result.run_dir, result.status, summary)


def read_files(run_dir: Path) -> dict[str, bytes]:
    """Every file under a run directory, by relative path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return {}
    return {
        str(path.relative_to(run_dir)): path.read_bytes()
        for path in sorted(run_dir.rglob("*"))
        if path.is_file()
    }


def write_files(run_dir: Path, files: dict[str, bytes]) -> None:
    """Write a worker's run files into the driver's run directory, each atomically, the
    summary last (a run with a summary is finished)."""
    ordered = sorted(files.items(), key=lambda item: item[0] == RunDirectory.SUMMARY)
    for name, data in ordered:
        path = Path(run_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)


def run_job(job: Job, ship: bool = False, node: str | None = None):
    """Execute `job` in this process; `(result, files)`.

    Without `ship` it trains in `job.run_dir` and `files` is empty. With `ship` (a worker
    that may not share the driver's file system) it trains in a temporary directory
    seeded with `job.files` and returns the run's files for the driver to write.
    """
    if not ship:
        return _record_worker(execute_run(job.config, job.run_dir, job.label), node), {}
    with tempfile.TemporaryDirectory(prefix="nderegs-run-") as tmp:
        local = Path(tmp) / "run"
        write_files(local, job.files)
        result = _record_worker(execute_run(job.config, local, job.label), node)
        files = read_files(local)
    # Messages name the driver's run directory, not the worker's temporary one.
    error = result.error.replace(str(local), str(job.run_dir)) if result.error else None
    result = RunResult(
        result.method, result.seed, job.run_dir, result.status, result.summary, error
    )
    return result, files
