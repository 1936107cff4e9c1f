"""The runs of a comparison or a sweep (`nderegs.report.sweep.run_sweep`, of which a
comparison is the case without a grid): method entries, seeds, each run's config and
directory, and their execution, resumably, on a backend (`nderegs.runners`: this
process, a local pool, or Ray).

Each run lives in `output_dir/<method with + as _>/seed<k>`, or
`output_dir/<method>/<key-value__...>/seed<k>` for a setting of a sweep's grids. A run
whose `summary.json` exists is not trained again (its summary is read back); one with a
checkpoint but no summary is continued with `train(..., resume=True)`; any exception
from one run is recorded as that run's failure and the others go on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
import os
from pathlib import Path
import sys

from tqdm.auto import tqdm

from ..config import ConfigError, ExperimentConfig, load_config, parse_method
from ..runners import AbstractBackend, InProcess, Job, RunResult, stale_run_problem
from ..runners.run import FAILED, READ, RESUMED, SKIPPED
from ..tasks import Metric, metric_named
from ..train import RunDirectory
from .header import ReportHeader


@dataclass(frozen=True)
class ComparisonResult:
    """All runs of a comparison, in the order they were run (methods outer, seeds inner).

    `header` is the provenance its files record (command, machine, date), for a
    comparison read back from its folder (`nderegs.report.read_comparison`); None for
    one run here.
    """

    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    output_dir: Path
    runs: tuple[RunResult, ...]
    config_path: Path | None = None
    overrides: tuple[str, ...] = field(default_factory=tuple)
    header: ReportHeader | None = None

    def runs_of(self, method: str) -> list[RunResult]:
        """The runs of one method, in seed order."""
        return [r for r in self.runs if r.method == method]

    @property
    def metric(self) -> Metric:
        """The task's metric, named by the first successful run's summary (a generic
        one if none succeeded: `metric_named`)."""
        names = (r.summary["metric"] for r in self.runs if r.summary is not None)
        return metric_named(next(names, None))

    @property
    def failures(self) -> list[RunResult]:
        return [r for r in self.runs if not r.succeeded]


def split_entries(text: str) -> list[str]:
    """Split a comma-separated list of method entries, keeping the commas inside an
    entry's brackets: ``"vanilla,error[a=1,b=2]"`` -> ``["vanilla", "error[a=1,b=2]"]``."""
    entries, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            entries.append(current.strip())
            current = ""
        else:
            current += char
    entries.append(current.strip())
    return [e for e in entries if e]


def parse_entry(entry: str) -> tuple[str, tuple[str, ...]]:
    """``"local-error[solver.adjoint=backsolve]"`` -> ``("local-error",
    ("solver.adjoint=backsolve",))``: a method and the overrides of its row. Raises
    `ConfigError` for a malformed entry or method."""
    method, overrides = entry.strip(), ()
    if "[" in method or "]" in method:
        head, bracket, rest = method.partition("[")
        if not bracket or not rest.endswith("]") or "[" in rest[:-1] or "]" in rest[:-1]:
            raise ConfigError(
                f"malformed method entry {entry!r}; expected METHOD or "
                "METHOD[key=value,key=value], e.g. local-error[solver.adjoint=backsolve]"
            )
        method = head.strip()
        overrides = tuple(o.strip() for o in rest[:-1].split(",") if o.strip())
        bad = [o for o in overrides if "=" not in o]
        if bad or not overrides:
            raise ConfigError(
                f"method entry {entry!r}: the brackets hold key=value overrides "
                f"separated by commas; got {rest[:-1]!r}"
            )
        fixed = [o for o in overrides if o.split("=", 1)[0].strip() in ("method", "seed")]
        if fixed:
            raise ConfigError(
                f"method entry {entry!r}: {', '.join(fixed)} cannot be set per row (the "
                "method is the entry's own and seeds come from --seeds / --seed-list)"
            )
    parse_method(method)
    return "+".join(part.strip() for part in method.split("+")), overrides


def entry_label(method: str, overrides: Sequence[str]) -> str:
    return method + (f"[{','.join(overrides)}]" if overrides else "")


def normalize_methods(methods: Iterable[str]) -> list[str]:
    """Validate method entries (`METHOD` or `METHOD[key=value,...]`, the overrides of
    that row) with `parse_method` (raising `ConfigError`, whose message lists the valid
    components) and normalise the spaces."""
    normalized = [entry_label(*parse_entry(m)) for m in methods]
    if not normalized:
        raise ConfigError("no methods given; pass e.g. --methods vanilla,error")
    duplicates = sorted({m for m in normalized if normalized.count(m) > 1})
    if duplicates:
        raise ConfigError(f"method(s) listed more than once: {', '.join(duplicates)}")
    return normalized


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """`N` -> seeds 0..N-1; a sequence is checked (non-negative, no repeats) and kept."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"the number of seeds must be >= 1, got {seeds}")
        return list(range(seeds))
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("the seed list is empty")
    if any(s < 0 for s in seeds):
        raise ConfigError(f"seeds must be >= 0, got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds listed more than once: {seeds}")
    return seeds


def method_slug(method: str) -> str:
    """The directory name of a method entry: '+' replaced by '_', and each override of
    `METHOD[key=value,...]` appended as `__key-value`."""
    method, overrides = parse_entry(method)
    parts = [method.replace("+", "_")]
    parts += [o.replace("=", "-").replace("/", "-") for o in overrides]
    return "__".join(parts)


#: A run's values of the grid keys of a sweep, `((key, value), ...)`; () without a grid.
Setting = tuple[tuple[str, str], ...]


def run_dir_for(output_dir: Path, method: str, seed: int, setting: Setting = ()) -> Path:
    """`output_dir/<method_slug>/seed<k>`, with the setting's `key-value__...` folder
    between them when there is one."""
    values = "__".join(f"{k}-{v}".replace("/", "-") for k, v in setting)
    return Path(output_dir, method_slug(method), *([values] if values else []), f"seed{seed}")


def default_output_dir(config: ExperimentConfig, command: str = "compare") -> Path:
    """`<config output_dir>/<command>-<config name>`: where `nderegs compare` (or
    `sweep`) writes without `--output-dir`."""
    return Path(config.output_dir) / f"{command}-{config.name}"


def run_config(
    config_path: str | os.PathLike | None,
    overrides: Sequence[str],
    method: str,
    seed: int,
    setting: Setting = (),
) -> ExperimentConfig:
    """The config of one run: the user's overrides, the method entry's own, the
    setting's, then seed, method and no progress bar."""
    method, own = parse_entry(method)
    values = [f"{k}={v}" for k, v in setting]
    fixed = [f"seed={seed}", f"method={method}", "train.progress=false"]
    return load_config(config_path, [*overrides, *own, *values, *fixed])


def _format_seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds >= 1 else f"{seconds:.3g} s"


def progress_line(result: RunResult, index: int, total: int, name: str) -> str:
    """E.g. `[3/30] error seed 1: test accuracy 0.9611, NFE 31.0, train 12.3 s`; `name`
    stands for the run before its seed: its row label (e.g.
    `local-error[solver.adjoint=backsolve]`) and, in a sweep, its grid values (e.g.
    `error regularization.error.start=0.3`)."""
    prefix = f"[{index}/{total}] {name} seed {result.seed}: "
    s = result.summary
    if s is None:
        return prefix + f"FAILED: {result.error}"
    nfe = "n/a" if s.get("test_nfe") is None else f"{s['test_nfe']:.1f}"
    note = {SKIPPED: " (already done)", RESUMED: " (resumed)", READ: " (read back)"}.get(
        result.status, ""
    )
    return (
        prefix + f"test {s['metric']} {s['test_metric']:.4f}, NFE {nfe}, "
        f"train {_format_seconds(s['train_seconds'])}{note}"
    )


def check_clashes(jobs: Sequence[Job], output_dir: Path) -> None:
    """`ConfigError` (before anything is trained or written) when two jobs would share a
    run directory or run directories hold runs of other settings."""
    directories = [job.run_dir for job in jobs]
    if len(set(directories)) != len(directories):
        twice = next(d for d in directories if directories.count(d) > 1)
        raise ConfigError(f"two runs would share the run directory {twice}; use distinct values")
    clashes = [problem for job in jobs if (problem := stale_run_problem(job.run_dir, job.config))]
    if clashes:
        raise ConfigError(
            f"{output_dir} already holds runs of other settings, so nothing was run:\n- "
            + "\n- ".join(clashes)
        )


def run_jobs(
    jobs: Sequence[Job],
    names: Sequence[str],
    backend: AbstractBackend | None = None,
    progress: bool = True,
) -> list[RunResult]:
    """Execute `jobs` on `backend` (default: one after the other in this process) and
    return their results in the jobs' order. Finished runs (summary.json present) are
    read back, not sent to the backend. With `progress`: one bar over the runs and one
    line per finished run (`progress_line`, naming each job by its name in `names`)."""
    backend = backend or InProcess()
    name_of = dict(zip((job.run_dir for job in jobs), names, strict=True))
    results: dict[Path, RunResult] = {}
    todo = []
    for job in jobs:
        summary = RunDirectory(job.run_dir).read_summary()
        if summary is not None:
            results[job.run_dir] = RunResult(
                job.label, job.config.seed, job.run_dir, SKIPPED, summary=summary
            )
        else:
            todo.append(job)
    bar = tqdm(total=len(jobs), desc="runs", unit="run", disable=not progress)
    bar.update(len(jobs) - len(todo))
    for result in backend.run(todo):
        results[result.run_dir] = result
        if progress:
            line = progress_line(result, len(results), len(jobs), name_of[result.run_dir])
            # stderr: the command's stdout holds only its table
            tqdm.write(line, file=sys.stderr)
        bar.update()
    bar.close()
    return [results[job.run_dir] for job in jobs]


def collect_runs(run_dirs: Mapping[str, str | os.PathLike]) -> ComparisonResult:
    """A comparison of runs trained elsewhere (e.g. by `nderegs.train.train` in a
    notebook), given as label -> run directory; a run without `summary.json` counts as
    failed. The labels play the part of the methods ("vanilla" is the baseline of the
    ratios)."""
    runs = []
    for label, path in run_dirs.items():
        run = RunDirectory(path)
        summary = run.read_summary()
        seed = summary["seed"] if summary is not None else 0
        status = READ if summary is not None else FAILED
        error = None if summary is not None else f"no {run.SUMMARY} in {run.path}"
        runs.append(RunResult(label, seed, run.path, status, summary=summary, error=error))
    output_dir = Path(os.path.commonpath([str(r.run_dir) for r in runs])) if runs else Path(".")
    return ComparisonResult(
        methods=tuple(run_dirs),
        seeds=tuple(sorted({r.seed for r in runs})),
        output_dir=output_dir,
        runs=tuple(runs),
    )
