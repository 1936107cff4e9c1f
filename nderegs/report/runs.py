"""Run every (method, seed) pair of a comparison, one after the other, resumably.

Each run lives in `output_dir/<method with + as _>/seed<k>`. A run whose `summary.json`
exists is not trained again (its summary is read back); one with a checkpoint but no
summary is continued with `train(..., resume=True)`; any exception from one run is
recorded as that run's failure and the others go on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
import os
from pathlib import Path

from tqdm.auto import tqdm

from ..config import (
    config_changes,
    ConfigError,
    ExperimentConfig,
    load_config,
    parse_method,
)
from ..train import RunDirectory, train

#: `RunResult.status` values.
TRAINED, RESUMED, SKIPPED, FAILED = "trained", "resumed", "skipped", "failed"


@dataclass(frozen=True)
class RunResult:
    """The outcome of one (method, seed) run.

    `status` is "trained" (from scratch), "resumed" (continued from a checkpoint),
    "skipped" (its summary.json was already there) or "failed" (then `error` holds the
    message and `summary` is None).
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
class ComparisonResult:
    """All runs of a comparison, in the order they were run (methods outer, seeds inner)."""

    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    output_dir: Path
    runs: tuple[RunResult, ...]
    config_path: Path | None = None
    overrides: tuple[str, ...] = field(default_factory=tuple)

    def runs_of(self, method: str) -> list[RunResult]:
        """The runs of one method, in seed order."""
        return [r for r in self.runs if r.method == method]

    @property
    def metric(self) -> str | None:
        """ "accuracy" or "mse", from the first successful run (None if none succeeded)."""
        return next((r.summary["metric"] for r in self.runs if r.succeeded), None)

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


def run_dir_for(output_dir: Path, method: str, seed: int) -> Path:
    return Path(output_dir) / method_slug(method) / f"seed{seed}"


def default_output_dir(config: ExperimentConfig) -> Path:
    """`<config output_dir>/compare-<config name>`."""
    return Path(config.output_dir) / f"compare-{config.name}"


def run_config(
    config_path: str | os.PathLike | None, overrides: Sequence[str], method: str, seed: int
) -> ExperimentConfig:
    """The config of one run: the user's overrides, the method entry's own, then seed,
    method and no progress bar."""
    method, own = parse_entry(method)
    return load_config(
        config_path,
        [*overrides, *own, f"seed={seed}", f"method={method}", "train.progress=false"],
    )


def _stale_run_problem(run_dir: Path, config: ExperimentConfig) -> str | None:
    """Why an existing run directory cannot be reused for `config` (None if it can)."""
    if not RunDirectory(run_dir).has_config:
        return None
    try:
        changes = config_changes(RunDirectory(run_dir).read_config(), config)
        # How a run reports (progress bar, where its parent folder is) is not a clash.
        differences = [key for key in changes if key not in ("train.progress", "output_dir")]
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
    problem = _stale_run_problem(run_dir, config) if run.is_started else None
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


def _format_seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds >= 1 else f"{seconds:.3g} s"


def progress_line(result: RunResult, index: int, total: int) -> str:
    """E.g. `[3/30] error seed 1: test accuracy 0.9611, NFE 31.0, train 12.3 s`."""
    prefix = f"[{index}/{total}] {result.method} seed {result.seed}: "
    if not result.succeeded:
        return prefix + f"FAILED: {result.error}"
    s = result.summary
    nfe = "n/a" if s.get("test_nfe") is None else f"{s['test_nfe']:.1f}"
    note = {SKIPPED: " (already done)", RESUMED: " (resumed)"}.get(result.status, "")
    return (
        prefix + f"test {s['metric']} {s['test_metric']:.4f}, NFE {nfe}, "
        f"train {_format_seconds(s['train_seconds'])}{note}"
    )


def run_comparison(
    config_path: str | os.PathLike | None,
    methods: Sequence[str],
    seeds: int | Sequence[int],
    overrides: Sequence[str] = (),
    output_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> ComparisonResult:
    """Train every method with every seed, sequentially, and collect the summaries.

    `seeds` is a count N (seeds 0..N-1) or a list. `overrides` are `dotted.key=value`
    strings applied to the config before `seed=`, `method=` and `train.progress=false`.
    `output_dir` defaults to `<config output_dir>/compare-<config name>`. All configs
    are validated before any training (`ConfigError`); a run that raises is recorded as
    failed. With `progress`, prints one line per run under a bar over the runs. Runs
    already in `output_dir` with other settings raise `ConfigError` before anything is
    trained or written.
    """
    methods = normalize_methods(methods)
    seeds = seed_list(seeds)
    overrides = tuple(overrides)
    configs = {(m, s): run_config(config_path, overrides, m, s) for m in methods for s in seeds}
    for config in configs.values():
        config.check_trains_something()
    if output_dir is None:
        output_dir = default_output_dir(next(iter(configs.values())))
    output_dir = Path(output_dir)
    clashes = [
        problem
        for (method, seed), config in configs.items()
        if (problem := _stale_run_problem(run_dir_for(output_dir, method, seed), config))
    ]
    if clashes:
        # Before anything is trained or written: the folder's table and plots stay.
        raise ConfigError(
            f"{output_dir} already holds runs of other settings, so nothing was run:\n- "
            + "\n- ".join(clashes)
        )

    runs = []
    bar = tqdm(total=len(configs), desc="runs", unit="run", disable=not progress)
    for index, ((method, seed), config) in enumerate(configs.items(), start=1):
        bar.set_postfix_str(f"{method} seed {seed}")
        result = execute_run(config, run_dir_for(output_dir, method, seed), label=method)
        runs.append(result)
        if progress:
            tqdm.write(progress_line(result, index, len(configs)))
        bar.update()
    bar.close()
    return ComparisonResult(
        methods=tuple(methods),
        seeds=tuple(seeds),
        output_dir=output_dir,
        runs=tuple(runs),
        config_path=Path(config_path) if config_path is not None else None,
        overrides=overrides,
    )


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
        status = SKIPPED if summary is not None else FAILED
        error = None if summary is not None else f"no {run.SUMMARY} in {run.path}"
        runs.append(RunResult(label, seed, run.path, status, summary=summary, error=error))
    output_dir = Path(os.path.commonpath([str(r.run_dir) for r in runs])) if runs else Path(".")
    return ComparisonResult(
        methods=tuple(run_dirs),
        seeds=tuple(sorted({r.seed for r in runs})),
        output_dir=output_dir,
        runs=tuple(runs),
    )
