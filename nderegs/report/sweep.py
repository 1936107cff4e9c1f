"""Coefficient sweeps: every method over a grid of settings and seeds, each trial an
ordinary training run, and the Pareto front of (test NFE, test metric) per method. A
comparison (`run_comparison`) is a sweep without a grid.

A grid is ``KEY=V1,V2,...`` (every method) or ``METHOD:KEY=V1,V2,...`` (that method
only); a method's settings are the product of its grids. Trial run directories:
`output_dir/<method>/<key-value__...>/seed<k>` (`output_dir/<method>/seed<k>` for a
method without a grid, as in a comparison).

Outputs (`write_sweep`): `sweep.csv` (one row per trial), `pareto.md` (per method: each
setting's mean ± sd over seeds, its non-dominated settings, and the best setting within
one point of vanilla's metric), `pareto.png` and `tuned.md` (the comparison table with
every method at its best setting).

"Within one point": within the metric's tolerance of vanilla's mean (`Metric.matches`;
e.g. at least vanilla's mean accuracy minus 0.01; at most 1.01 × vanilla's mean for a
loss; at most vanilla's mean + 0.05 for a negative log-likelihood, in nats).
"""

from __future__ import annotations

from collections.abc import Sequence
import csv
from dataclasses import dataclass
import itertools
import math
import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..config import ConfigError, load_config
from ..runners import AbstractBackend, Job, RunResult
from ..tasks import Metric, metric_named
from .plots import method_styles, metric_axis, place_legend, save_figure
from .runs import (
    check_clashes,
    ComparisonResult,
    default_output_dir,
    entry_label,
    normalize_methods,
    parse_entry,
    run_config,
    run_dir_for,
    run_jobs,
    seed_list,
    Setting,
)
from .table import (
    BASELINE,
    format_spread,
    markdown_table,
    method_rows,
    Spread,
    spread,
)

CSV_FILE = "sweep.csv"
PARETO_MARKDOWN = "pareto.md"
PARETO_PLOT = "pareto.png"
TUNED_MARKDOWN = "tuned.md"

#: summary.json fields copied into sweep.csv.
SUMMARY_COLUMNS = (
    "metric",
    "train_metric",
    "test_metric",
    "test_nfe",
    "test_nfe_max",
    "train_nfe",
    "train_backward_nfe",
    "train_backward_vjps",
    "train_seconds",
    "compile_seconds",
    "predict_seconds",
    "train_step_bytes",
    "num_params",
    "devices",
)


@dataclass(frozen=True)
class Grid:
    """One ``[METHOD:]KEY=V1,V2,...``: `method` None applies to every method."""

    method: str | None
    key: str
    values: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Grid:
        if "]:" in text:  # a METHOD[key=value,...] entry: its brackets hold '=' and ','
            method, colon, rest = text.partition("]:")
            method, colon = method + "]", ":"
            key, equals, values = rest.partition("=")
        else:
            head, equals, values = text.partition("=")
            method, colon, key = head.rpartition(":")
        key = key.strip()
        parsed = tuple(v.strip() for v in values.split(",") if v.strip())
        if not equals or not key or not parsed:
            raise ConfigError(
                f"malformed grid {text!r}; expected KEY=V1,V2,... or METHOD:KEY=V1,V2,..., "
                "e.g. error:regularization.error.start=0.1,0.3,1,3"
            )
        if key in ("method", "seed"):
            raise ConfigError(
                f"grid {text!r}: {key} is not a grid key (methods come from --methods, "
                "seeds from --seeds)"
            )
        if len(set(parsed)) != len(parsed):
            raise ConfigError(f"grid {text!r} lists a value more than once")
        entry = entry_label(*parse_entry(method)) if colon else None
        return cls(entry, key, parsed)


@dataclass(frozen=True)
class Trial:
    """One (method, setting, seed) of a sweep and its outcome."""

    method: str
    setting: Setting
    seed: int
    result: RunResult


def setting_label(setting: Setting) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting) or "(config)"


def trial_name(method: str, setting: Setting) -> str:
    """How a trial's progress line names it: its method entry and every grid value, e.g.
    `error regularization.error.start=0.3` (the bare method without a grid)."""
    return " ".join([method, *(f"{k}={v}" for k, v in setting)])


def method_settings(method: str, grids: list[Grid]) -> list[Setting]:
    """The product of the grids that apply to `method` (one empty setting without)."""
    own = [g for g in grids if g.method in (None, method)]
    keys = [g.key for g in own]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"method {method}: a grid key is given twice ({', '.join(keys)})")
    return [tuple(zip(keys, values)) for values in itertools.product(*(g.values for g in own))]


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep: its trials in order (methods, settings, seeds)."""

    methods: tuple[str, ...]
    grid_keys: tuple[str, ...]
    seeds: tuple[int, ...]
    output_dir: Path
    trials: tuple[Trial, ...]

    @property
    def metric(self) -> Metric:
        """The task's metric, named by the first successful trial (`metric_named`)."""
        summaries = (t.result.summary for t in self.trials)
        return metric_named(next((s["metric"] for s in summaries if s is not None), None))

    def settings_of(self, method: str) -> list[Setting]:
        return list(dict.fromkeys(t.setting for t in self.trials if t.method == method))

    def runs_of(self, method: str, setting: Setting) -> list[RunResult]:
        return [t.result for t in self.trials if t.method == method and t.setting == setting]

    @property
    def failures(self) -> list[Trial]:
        return [t for t in self.trials if not t.result.succeeded]


def run_sweep(
    config_path: str | os.PathLike | None,
    methods: Sequence[str],
    grids: Sequence[str],
    seeds: int | Sequence[int],
    overrides: Sequence[str] = (),
    output_dir: str | os.PathLike | None = None,
    backend: AbstractBackend | None = None,
    progress: bool = True,
) -> SweepResult:
    """Train every method × its settings × seeds on `backend` (default: this process).

    `output_dir` defaults to `<config output_dir>/sweep-<config name>`. Every trial's
    config and run directory are checked before anything runs (`ConfigError`, also for
    a directory that holds a run of other settings or that two trials would share);
    finished trials are read back, not trained again; a failing trial is recorded and
    the others go on. With `progress`, prints one line per trial under a bar over the
    trials.
    """
    methods = normalize_methods(methods)
    parsed = [Grid.parse(g) for g in grids]
    unknown = sorted({g.method for g in parsed if g.method is not None} - set(methods))
    if unknown:
        raise ConfigError(
            f"grid for method {unknown[0]!r}, which is not in --methods ({', '.join(methods)})"
        )
    seeds = seed_list(seeds)
    if output_dir is None:
        output_dir = default_output_dir(load_config(config_path, overrides), "sweep")
    output_dir = Path(output_dir)
    planned: list[tuple[str, Setting, int, Job]] = []
    for method in methods:
        own_keys = {o.split("=", 1)[0].strip() for o in parse_entry(method)[1]}
        clash = sorted(own_keys & {g.key for g in parsed if g.method in (None, method)})
        if clash:
            raise ConfigError(
                f"method entry {method!r} sets {clash[0]} itself and a --grid sweeps it too; "
                "keep one of them"
            )
        for setting in method_settings(method, parsed):
            for seed in seeds:
                config = run_config(config_path, overrides, method, seed, setting)
                config.check_trains_something()
                job = Job(config, run_dir_for(output_dir, method, seed, setting), method)
                planned.append((method, setting, seed, job))
    jobs = [job for *_, job in planned]
    check_clashes(jobs, output_dir)
    names = [trial_name(method, setting) for method, setting, _, _ in planned]
    results = run_jobs(jobs, names, backend, progress)
    return SweepResult(
        methods=tuple(methods),
        grid_keys=tuple(dict.fromkeys(g.key for g in parsed)),
        seeds=tuple(seeds),
        output_dir=output_dir,
        trials=tuple(
            Trial(method, setting, seed, result)
            for (method, setting, seed, _), result in zip(planned, results)
        ),
    )


def run_comparison(
    config_path: str | os.PathLike | None,
    methods: Sequence[str],
    seeds: int | Sequence[int],
    overrides: Sequence[str] = (),
    output_dir: str | os.PathLike | None = None,
    progress: bool = True,
    backend: AbstractBackend | None = None,
) -> ComparisonResult:
    """Train every method with every seed and collect the summaries: a sweep
    (`run_sweep`) without a grid, whose runs are the comparison's.

    `seeds` is a count N (seeds 0..N-1) or a list. `overrides` are `dotted.key=value`
    strings applied to the config before `seed=`, `method=` and `train.progress=false`.
    `output_dir` defaults to `<config output_dir>/compare-<config name>`. `backend`
    (`nderegs.runners.make_backend`) says where the runs execute; default: one after
    the other in this process. All configs are validated before any training
    (`ConfigError`); a run that raises is recorded as failed. With `progress`, prints one
    line per run under a bar over the runs. Runs already in `output_dir` with other
    settings, or two entries whose runs would share a directory, raise `ConfigError`
    before anything is trained or written.
    """
    if output_dir is None:
        output_dir = default_output_dir(load_config(config_path, overrides), "compare")
    sweep = run_sweep(config_path, methods, [], seeds, overrides, output_dir, backend, progress)
    return ComparisonResult(
        methods=sweep.methods,
        seeds=sweep.seeds,
        output_dir=sweep.output_dir,
        runs=tuple(trial.result for trial in sweep.trials),
        config_path=Path(config_path) if config_path is not None else None,
        overrides=tuple(overrides),
    )


# --------------------------------------------------------------------------- #
# Settings, fronts, best settings
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class SettingStats:
    """One method's setting over its seeds."""

    method: str
    setting: Setting
    runs: int
    failed: int
    test_nfe: Spread | None
    test_metric: Spread | None
    train_seconds: Spread | None


def setting_stats(result: SweepResult) -> list[SettingStats]:
    rows = []
    for method in result.methods:
        for setting in result.settings_of(method):
            runs = result.runs_of(method, setting)
            summaries = [r.summary for r in runs if r.summary is not None]
            rows.append(
                SettingStats(
                    method,
                    setting,
                    len(runs),
                    len(runs) - len(summaries),
                    spread([s.get("test_nfe") for s in summaries]),
                    spread([s.get("test_metric") for s in summaries]),
                    spread([s.get("train_seconds") for s in summaries]),
                )
            )
    return rows


def _complete(s: SettingStats) -> bool:
    """Every seed succeeded: a setting some seeds of which diverged is never "best"."""
    return s.failed == 0 and s.test_nfe is not None and s.test_metric is not None


def pareto_front(stats: list[SettingStats], metric: Metric) -> list[SettingStats]:
    """The non-dominated settings on (test NFE: lower is better, test metric), by mean
    over seeds, sorted by NFE. A setting is dominated when another is at least as good
    in both and better in one."""
    sign = metric.better_sign
    points = [s for s in stats if _complete(s)]

    def key(s: SettingStats) -> tuple[float, float]:
        assert s.test_nfe is not None and s.test_metric is not None
        return s.test_nfe.mean, sign * s.test_metric.mean

    def dominated(s: SettingStats) -> bool:
        nfe, good = key(s)
        return any(key(o)[0] <= nfe and key(o)[1] >= good and key(o) != (nfe, good) for o in points)

    return sorted((s for s in points if not dominated(s)), key=key)


def baseline_setting(stats: list[SettingStats], metric: Metric) -> SettingStats | None:
    """Vanilla's setting (its best-metric one if it has several)."""
    vanilla = [s for s in stats if s.method == BASELINE and _complete(s)]
    if not vanilla:
        return None
    sign = metric.better_sign
    return max(vanilla, key=lambda s: sign * s.test_metric.mean if s.test_metric else -math.inf)


def baseline_metric(stats: list[SettingStats], metric: Metric) -> float | None:
    """Vanilla's mean test metric (its best setting if it has several)."""
    vanilla = baseline_setting(stats, metric)
    return vanilla.test_metric.mean if vanilla and vanilla.test_metric else None


def best_setting(
    stats: list[SettingStats], method: str, baseline: float | None, metric: Metric
) -> tuple[SettingStats | None, bool]:
    """`(setting, matched)`: the lowest-NFE setting of `method` within one point of
    vanilla (matched True); without one (or without vanilla), its best-metric setting
    (matched False)."""
    own = [s for s in stats if s.method == method and _complete(s)]
    if not own:
        return None, False
    if baseline is not None:
        matched = [s for s in own if s.test_metric and metric.matches(s.test_metric.mean, baseline)]
        if matched:
            sign = metric.better_sign
            return min(
                matched,
                key=lambda s: (
                    s.test_nfe.mean if s.test_nfe else math.inf,
                    -sign * s.test_metric.mean if s.test_metric else math.inf,
                ),
            ), True
    sign = metric.better_sign
    return max(own, key=lambda s: sign * s.test_metric.mean if s.test_metric else -math.inf), False


# --------------------------------------------------------------------------- #
# Files
# --------------------------------------------------------------------------- #


def _figures(summary: dict) -> dict:
    """The summary's figures as CSV cells: scalars, and one level of nested scalars as
    `outer.inner` (e.g. solver.rtol); not the worker (its own columns) or lists."""
    cells = {}
    for key, value in summary.items():
        if key in ("worker", "method", "seed"):
            continue
        if isinstance(value, dict):
            cells.update(
                {f"{key}.{k}": v for k, v in value.items() if not isinstance(v, dict | list)}
            )
        elif not isinstance(value, list):
            cells[key] = value
    return cells


def write_sweep_csv(result: SweepResult, path: Path) -> Path:
    """One row per trial: method, grid values, seed, status, error, summary figures and
    the worker that ran it."""
    figures = [_figures(t.result.summary or {}) for t in result.trials]
    others = [k for f in figures for k in f if k not in SUMMARY_COLUMNS]
    columns = [
        "method",
        *result.grid_keys,
        "seed",
        "status",
        "error",
        *SUMMARY_COLUMNS,
        *dict.fromkeys(others),
        "worker_pid",
        "worker_node",
        "run_dir",
    ]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for trial, figure in zip(result.trials, figures):
            summary = trial.result.summary or {}
            worker = summary.get("worker") or {}
            row = {
                "method": trial.method,
                **dict(trial.setting),
                "seed": trial.seed,
                "status": trial.result.status,
                "error": trial.result.error or "",
                **figure,
                "worker_pid": worker.get("pid", ""),
                "worker_node": worker.get("node") or worker.get("host", ""),
                "run_dir": str(trial.result.run_dir),
            }
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path


def pareto_markdown(result: SweepResult, header: list[str]) -> str:
    metric = result.metric
    scale, label = metric_axis(metric)
    stats = setting_stats(result)
    baseline = baseline_metric(stats, metric)
    lines = [*header, ""]
    lines += [
        "## Best setting per method within 1 point of vanilla",
        "",
        f"Lowest mean test NFE among the settings whose mean {label} is "
        f"{metric.tolerance_words}"
        + (f" (vanilla: {scale * baseline:.4g})." if baseline is not None else "."),
        "",
        f"| Method | Setting | Test NFE | {label} | Train time (s) | NFE × vanilla | Within 1 point |",
        "|---|---|--:|--:|--:|--:|---|",
    ]
    vanilla = baseline_setting(stats, metric)
    vanilla_nfe = vanilla.test_nfe.mean if vanilla and vanilla.test_nfe else None
    for method in result.methods:
        best, matched = best_setting(stats, method, baseline, metric)
        if best is None:
            lines.append(f"| `{method}` | no successful trial | | | | | |")
            continue
        ratio = f"{best.test_nfe.mean / vanilla_nfe:.2f}" if vanilla_nfe and best.test_nfe else "–"
        lines.append(
            f"| `{method}` | {setting_label(best.setting)} | "
            f"{format_spread(best.test_nfe, 'test_nfe', metric)} | "
            f"{format_spread(best.test_metric, 'test_metric', metric)} | "
            f"{format_spread(best.train_seconds, 'train_seconds', metric)} | {ratio} | "
            f"{'yes' if matched else 'no (best metric shown)'} |"
        )
    lines += ["", "## Every setting (★: on the method's Pareto front)", ""]
    for method in result.methods:
        own = [s for s in stats if s.method == method]
        front = pareto_front(own, metric)
        lines += [
            f"### `{method}`",
            "",
            f"| Setting | Test NFE | {label} | Train time (s) | Runs | Front |",
            "|---|--:|--:|--:|--:|:-:|",
        ]
        for s in own:
            runs = f"{s.runs - s.failed}/{s.runs}"
            lines.append(
                f"| {setting_label(s.setting)} | {format_spread(s.test_nfe, 'test_nfe', metric)} | "
                f"{format_spread(s.test_metric, 'test_metric', metric)} | "
                f"{format_spread(s.train_seconds, 'train_seconds', metric)} | {runs} | "
                f"{'★' if s in front else ''} |"
            )
        lines.append("")
    failures = result.failures
    if failures:
        lines += ["## Failed trials", ""]
        lines += [
            f"- `{t.method}` {setting_label(t.setting)} seed {t.seed}: {t.result.error}"
            for t in failures
        ]
    return "\n".join(lines) + "\n"


def pareto_figure(result: SweepResult) -> Figure:
    """Test NFE against test metric: every setting (mean, error bars: sd over seeds),
    a line along each method's Pareto front, vanilla as a star."""
    metric = result.metric
    scale, label = metric_axis(metric)
    stats = setting_stats(result)
    figure = Figure(figsize=(8, 5.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    styles = method_styles(result.methods)
    for method in result.methods:
        own = [s for s in stats if s.method == method and _complete(s)]
        if not own:
            continue
        style = styles[method]
        vanilla = method == BASELINE
        marker = "*" if vanilla else style["marker"]
        axes.errorbar(
            [s.test_nfe.mean for s in own if s.test_nfe],
            [scale * s.test_metric.mean for s in own if s.test_metric],
            xerr=[(s.test_nfe.sd or 0.0) for s in own if s.test_nfe],
            yerr=[scale * (s.test_metric.sd or 0.0) for s in own if s.test_metric],
            fmt=marker,
            color=style["color"],
            markersize=14 if vanilla else 6,
            markeredgecolor="black" if vanilla else style["color"],
            capsize=2,
            alpha=0.9,
            label=f"{method} ({len(own)} setting{'s' if len(own) != 1 else ''})",
        )
        front = pareto_front(own, metric)
        if len(front) > 1:
            axes.plot(
                [s.test_nfe.mean for s in front if s.test_nfe],
                [scale * s.test_metric.mean for s in front if s.test_metric],
                color=style["color"],
                linewidth=1.2,
            )
    axes.set_xlabel("test NFE (mean per test batch)")
    axes.set_ylabel(label)
    axes.set_title("Pareto fronts: settings × seeds (mean ± sd), lines along each front")
    axes.grid(alpha=0.3)
    place_legend(axes, title="method")
    return figure


def plot_pareto(result: SweepResult, path: Path) -> Path:
    """pareto.png: `pareto_figure`."""
    return save_figure(pareto_figure(result), path)


def tuned_comparison(result: SweepResult) -> tuple[ComparisonResult, dict[str, str]]:
    """The comparison with every method at its best setting, and method -> setting."""
    stats = setting_stats(result)
    metric = result.metric
    baseline = baseline_metric(stats, metric)
    runs, chosen = [], {}
    for method in result.methods:
        best, matched = best_setting(stats, method, baseline, metric)
        if best is None:
            runs += [t.result for t in result.trials if t.method == method]
            chosen[method] = "no successful trial"
            continue
        runs += result.runs_of(method, best.setting)
        chosen[method] = setting_label(best.setting) + ("" if matched else " (best metric)")
    comparison = ComparisonResult(
        methods=result.methods, seeds=result.seeds, output_dir=result.output_dir, runs=tuple(runs)
    )
    return comparison, chosen


def write_sweep(result: SweepResult, output_dir: Path, header: list[str]) -> dict[str, Path]:
    """sweep.csv, pareto.md, pareto.png and tuned.md in `output_dir`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "csv": output_dir / CSV_FILE,
        "pareto": output_dir / PARETO_MARKDOWN,
        "plot": output_dir / PARETO_PLOT,
        "tuned": output_dir / TUNED_MARKDOWN,
    }
    write_sweep_csv(result, files["csv"])
    files["pareto"].write_text(
        pareto_markdown(result, ["# Sweep: Pareto fronts", "", "  \n".join(header)]),
        encoding="utf-8",
    )
    plot_pareto(result, files["plot"])
    comparison, chosen = tuned_comparison(result)
    table = markdown_table(method_rows(comparison), comparison.metric)
    settings = "\n".join(f"- `{m}`: {s}" for m, s in chosen.items())
    files["tuned"].write_text(
        "# Tuned comparison: every method at its best setting\n\n"
        + "  \n".join(header)
        + "\n\nSettings (the lowest test NFE within 1 point of vanilla, see pareto.md):\n\n"
        + settings
        + "\n\n"
        + table,
        encoding="utf-8",
    )
    return files
