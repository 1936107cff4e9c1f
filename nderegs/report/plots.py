"""Comparison plots (PNG, matplotlib's Agg canvas; pyplot and the global backend are
left untouched): test NFE over training, and test metric against prediction time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

from ..train import RunDirectory
from .runs import ComparisonResult, RunResult

DPI = 100
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def method_style(index: int) -> dict:
    """Color and marker of the index-th method, the same in every plot."""
    return {"color": f"C{index % 10}", "marker": MARKERS[index % len(MARKERS)]}


def _new_figure() -> Figure:
    figure = Figure(figsize=(7.5, 4.8), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def nfe_by_epoch(runs: Sequence[RunResult]) -> dict[int, list[float]]:
    """epoch -> the test NFE of each successful run evaluated at that epoch."""
    by_epoch: dict[int, list[float]] = {}
    for run in runs:
        if not run.succeeded:
            continue
        for row in RunDirectory(run.run_dir).read_metrics():
            if row.get("test_nfe") is not None:
                by_epoch.setdefault(int(row["epoch"]), []).append(float(row["test_nfe"]))
    return dict(sorted(by_epoch.items()))


def plot_nfe_over_training(result: ComparisonResult, path: Path) -> Path:
    """Test NFE against epoch per method: mean over seeds, shaded min–max."""
    figure = _new_figure()
    axes = figure.add_subplot()
    for index, method in enumerate(result.methods):
        runs = result.runs_of(method)
        by_epoch = nfe_by_epoch(runs)
        if not by_epoch:
            continue
        epochs = np.array(list(by_epoch))
        values = list(by_epoch.values())
        style = method_style(index)
        label = _label(method, sum(r.succeeded for r in runs))
        axes.plot(epochs, [np.mean(v) for v in values], label=label, markersize=5, **style)
        axes.fill_between(
            epochs,
            [min(v) for v in values],
            [max(v) for v in values],
            color=style["color"],
            alpha=_band_alpha(len(result.methods)),
            linewidth=0,
        )
    axes.set_xlabel("epoch")
    axes.set_ylabel("test NFE (mean per test batch)")
    axes.set_title("Test NFE over training (line: mean over seeds, band: min–max)")
    axes.xaxis.get_major_locator().set_params(integer=True)  # pyright: ignore[reportCallIssue]
    axes.grid(alpha=0.3)
    _legend(axes, _methods_without_success(result))
    figure.savefig(path)
    return path


def coefficient_histories(runs: Sequence[RunResult]) -> dict[str, list[list[float]]]:
    """term -> λ by epoch of each successful run, for the terms whose λ moved."""
    histories: dict[str, list[list[float]]] = {}
    for run in runs:
        if not run.succeeded:
            continue
        for term, coefficient in (run.summary or {}).get("coefficients", {}).items():
            by_epoch = coefficient.get("by_epoch", [])
            if len(set(by_epoch)) > 1:
                histories.setdefault(term, []).append(by_epoch)
    return histories


def plot_coefficients_over_training(result: ComparisonResult, path: Path) -> Path | None:
    """λ against epoch per method and term (log scale; mean over seeds, shaded min–max)
    for the coefficients that moved during training; None (no file) when none did."""
    figure = _new_figure()
    axes = figure.add_subplot()
    drawn = False
    for index, method in enumerate(result.methods):
        for line, (term, runs) in enumerate(
            sorted(coefficient_histories(result.runs_of(method)).items())
        ):
            length = min(len(r) for r in runs)
            values = np.array([r[:length] for r in runs])
            epochs = np.arange(1, length + 1)
            style = method_style(index)
            label = method if term == method else f"{method}: {term}"
            axes.plot(
                epochs,
                values.mean(axis=0),
                label=label,
                markersize=4,
                linestyle=("-", "--", ":", "-.")[line % 4],
                **style,
            )
            axes.fill_between(
                epochs,
                values.min(axis=0),
                values.max(axis=0),
                color=style["color"],
                alpha=_band_alpha(len(result.methods)),
                linewidth=0,
            )
            drawn = True
    if not drawn:
        return None
    axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel("coefficient λ (used during the epoch)")
    axes.set_title("Coefficients over training (line: mean over seeds, band: min–max)")
    axes.xaxis.get_major_locator().set_params(integer=True)  # pyright: ignore[reportCallIssue]
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.savefig(path)
    return path


def _band_alpha(methods: int) -> float:
    """Fainter min–max bands when many overlap."""
    return 0.2 if methods <= 3 else 0.1


def metric_axis(metric: str | None) -> tuple[float, str]:
    """(scale, label) of the metric axis."""
    if metric == "accuracy":
        return 100.0, "test accuracy (%)"
    return 1.0, f"test {metric or 'metric'}" + (
        " (lower is better)" if metric in ("mse", "nll") else ""
    )


def plot_metric_vs_prediction_time(result: ComparisonResult, path: Path) -> Path:
    """Test metric against prediction time, one point per successful run."""
    scale, label = metric_axis(result.metric)
    figure = _new_figure()
    axes = figure.add_subplot()
    for index, method in enumerate(result.methods):
        summaries = [r.summary for r in result.runs_of(method) if r.succeeded]
        if not summaries:
            continue
        axes.scatter(
            [1e3 * s["predict_seconds"] for s in summaries],
            [scale * s["test_metric"] for s in summaries],
            label=_label(method, len(summaries)),
            s=50,
            alpha=0.85,
            edgecolors="black",
            linewidths=0.5,
            **method_style(index),
        )
    axes.set_xlabel("prediction time per test batch (ms)")
    axes.set_ylabel(label)
    axes.set_title(f"{label[0].upper()}{label[1:]} vs prediction time (one point per run)")
    axes.grid(alpha=0.3)
    _legend(axes, _methods_without_success(result))
    figure.savefig(path)
    return path


def _label(method: str, runs: int) -> str:
    return f"{method} ({runs} run{'s' if runs != 1 else ''})"


def _methods_without_success(result: ComparisonResult) -> list[str]:
    return [m for m in result.methods if not any(r.succeeded for r in result.runs_of(m))]


def _legend(axes, failed_methods: Sequence[str]) -> None:
    """Legend of the methods shown, plus an entry naming those with no successful run."""
    if not axes.get_legend_handles_labels()[0]:
        axes.text(
            0.5, 0.5, "no successful runs", ha="center", va="center", transform=axes.transAxes
        )
    if failed_methods:
        axes.plot([], [], " ", label="no successful run: " + ", ".join(failed_methods))
    if axes.get_legend_handles_labels()[0]:
        axes.legend(title="method", loc="best")


#: The log-density grid a density run writes into its directory (see `DensityTask`).
DENSITY_GRID = "density.npz"


def density_runs(result: ComparisonResult) -> dict[str, RunResult]:
    """Method -> its first successful run (lowest seed) that wrote a density grid."""
    found = {}
    for method in result.methods:
        runs = sorted(
            (r for r in result.runs_of(method) if r.succeeded),
            key=lambda r: r.seed,
        )
        run = next((r for r in runs if (Path(r.run_dir) / DENSITY_GRID).is_file()), None)
        if run is not None:
            found[method] = run
    return found


def plot_densities(result: ComparisonResult, path: Path) -> Path | None:
    """The learned 2-D densities side by side, one panel per method (its lowest seed),
    titled with that run's test NLL and NFE; None when no run drew a density."""
    runs = density_runs(result)
    if not runs:
        return None
    columns = min(4, len(runs))
    rows = -(-len(runs) // columns)
    figure = Figure(figsize=(2.6 * columns, 2.8 * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    for index, (method, run) in enumerate(runs.items()):
        axes = figure.add_subplot(rows, columns, index + 1)
        with np.load(Path(run.run_dir) / DENSITY_GRID) as grid:
            box = float(grid["box"])
            density = np.exp(grid["log_density"])
        axes.imshow(density, origin="lower", extent=(-box, box, -box, box), cmap="magma")
        assert run.summary is not None
        axes.set_title(
            f"{_panel_label(method)}\nNLL {run.summary['test_metric']:.3f}, "
            f"NFE {run.summary['test_nfe']:.0f} (seed {run.seed})",
            fontsize=8,
        )
        axes.set_xticks([])
        axes.set_yticks([])
    figure.savefig(path)
    return path


def _panel_label(method: str) -> str:
    """A row label fit for a small panel: `rnode[regularization.kinetic.start=0.03]`
    -> "rnode\nkinetic=0.03" (the last key component that is not `start`)."""
    if "[" not in method:
        return method
    base, overrides = method.split("[", 1)
    short = []
    for item in overrides.rstrip("]").split(","):
        key, _, value = item.partition("=")
        parts = [p for p in key.split(".") if p != "start"]
        short.append(f"{parts[-1] if parts else key}={value}")
    return base + "\n" + ", ".join(short)
