"""Comparison plots (PNG, matplotlib's Agg canvas; pyplot and the global backend are
left untouched): test NFE (or any column of metrics.jsonl) over training, and test
metric against prediction time.

Every plot that draws methods styles them with `method_styles` (a colour and marker of
its own for each method, the same in every plot) and puts the legend beside the axes
with `place_legend` (it never covers data; the figure widens to hold it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
import re

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
import numpy as np

from ..tasks import Metric
from ..train import RunDirectory
from .runs import ComparisonResult, RunResult

DPI = 100
#: Method colours: matplotlib's tab10, then six darker hues unlike those (16 in all),
#: fixed here rather than taken from the rcParams' colour cycle.
COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#000000",
    "#393b79",
    "#637939",
    "#843c39",
    "#7b4173",
    "#8c6d31",
)
#: Method markers (filled ones, so an edge colour shows). Eleven, a number prime to the
#: 16 colours: the first 16 methods have distinct colours, and the first 176 distinct
#: (colour, marker) pairs. "*" is left out: pareto.png marks vanilla with it.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "d")


def method_style(index: int) -> dict:
    """Colour and marker of the index-th method, the same in every plot."""
    return {"color": COLORS[index % len(COLORS)], "marker": MARKERS[index % len(MARKERS)]}


def method_styles(labels: Sequence[str]) -> dict[str, dict]:
    """Label -> {"color", "marker"} of each method in `labels`, by its position: the
    same list gives the same styles in every plot, and no two of the first 176 labels
    share both colour and marker (none of the first 16 even a colour)."""
    return {label: method_style(index) for index, label in enumerate(labels)}


#: Characters per legend line; longer labels are wrapped after a comma, bracket or space.
LEGEND_WIDTH = 44
#: Legend entries per column before another column starts.
LEGEND_ROWS = 18


def wrap_label(label: str, width: int = LEGEND_WIDTH) -> str:
    """`label` broken into lines of about `width` characters after a ',', '[' or ': ',
    or before a ' (': an override list such as `error[a.b=1,c=2]` wraps between its
    overrides, and a run count `(3 runs)` stays whole."""
    lines = [""]
    for piece in re.split(r"(?<=[,\[])|(?<=: )|(?= \()", label):
        if lines[-1] and len(lines[-1]) + len(piece.rstrip()) > width:
            lines.append("")
            piece = piece.lstrip()
        lines[-1] += piece
    return "\n".join(line.rstrip() for line in lines)


def place_legend(axes: Axes, title: str | None = None) -> Legend | None:
    """The axes' legend outside them, to the right (top-aligned), with long labels
    wrapped; the figure widens by the legend's width so the axes keep their size.
    None (no legend) when nothing is labelled."""
    handles, labels = axes.get_legend_handles_labels()
    if not handles:
        return None
    legend = axes.legend(
        handles,
        [wrap_label(label) for label in labels],
        title=title,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0.0,
        fontsize="small",
        ncols=-(-len(handles) // LEGEND_ROWS),
    )
    figure = axes.get_figure()
    assert isinstance(figure, Figure) and isinstance(figure.canvas, FigureCanvasAgg)
    width = legend.get_window_extent(figure.canvas.get_renderer()).width
    figure.set_figwidth(figure.get_figwidth() + width / figure.dpi + 0.2)
    return legend


def _new_figure() -> Figure:
    figure = Figure(figsize=(7.5, 4.8), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    """Write `figure` as PNG, cropped to what it draws (the legend beside the axes
    included)."""
    figure.savefig(path, bbox_inches="tight")
    return path


def by_epoch(runs: Sequence[RunResult], key: str = "test_nfe") -> dict[int, list[float]]:
    """epoch -> the `key` column of metrics.jsonl (default: the test NFE) of each successful
    run that recorded it at that epoch."""
    values: dict[int, list[float]] = {}
    for run in runs:
        if not run.succeeded:
            continue
        for row in RunDirectory(run.run_dir).read_metrics():
            if row.get(key) is not None:
                values.setdefault(int(row["epoch"]), []).append(float(row[key]))
    return dict(sorted(values.items()))


def _draw_over_training(
    axes: Axes, result: ComparisonResult, methods: Sequence[str], key: str
) -> None:
    """One line per method (mean over its seeds, band min–max) of a metrics.jsonl column
    against the epoch, styled by the method's place in the comparison."""
    styles = method_styles(result.methods)
    for method in methods:
        runs = result.runs_of(method)
        values = by_epoch(runs, key)
        if not values:
            continue
        style = styles[method]
        label = _label(method, sum(r.succeeded for r in runs))
        axes.plot(
            list(values), [np.mean(v) for v in values.values()], label=label, markersize=5, **style
        )
        axes.fill_between(
            list(values),
            [min(v) for v in values.values()],
            [max(v) for v in values.values()],
            color=style["color"],
            alpha=_band_alpha(len(methods)),
            linewidth=0,
        )
    axes.set_xlabel("epoch")
    axes.xaxis.get_major_locator().set_params(integer=True)  # pyright: ignore[reportCallIssue]
    axes.grid(alpha=0.3)


def nfe_over_training_figure(result: ComparisonResult) -> Figure:
    """Test NFE against epoch per method: mean over seeds, shaded min–max."""
    figure = _new_figure()
    axes = figure.add_subplot()
    _draw_over_training(axes, result, result.methods, "test_nfe")
    axes.set_ylabel("test NFE (mean per test batch)")
    axes.set_title("Test NFE over training (line: mean over seeds, band: min–max)")
    _legend(axes, _methods_without_success(result))
    return figure


def over_training_figure(
    result: ComparisonResult,
    columns: Sequence[str | tuple[str, str]],
    methods: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Columns of the runs' `metrics.jsonl` against the epoch, one panel per column.

    Each method is a line, the mean over its successful seeds at each epoch, in a band
    from their minimum to their maximum; its colour and marker are those of its place
    in the comparison (`method_styles`), as in the other plots, and the legend is beside
    the last panel.

    Args:
        result: a comparison, run (`run_comparison`) or read back (`read_comparison`).
        columns: the columns, each a key of metrics.jsonl (e.g. `"test_nfe"`) or a pair
            (key, label of its axis).
        methods: the methods drawn (default: all of the comparison's).
        title: the figure's title.

    Example:
        ```python
        figure = over_training_figure(
            result, [("test_nfe", "test NFE"), ("test_accuracy", "test accuracy")],
            methods=["vanilla", "error"], title="digits",
        )
        figure.savefig("over_training.png", bbox_inches="tight")  # or display(figure)
        ```
    """
    methods = list(result.methods if methods is None else methods)
    panels = [(c, c) if isinstance(c, str) else c for c in columns]
    figure = Figure(figsize=(5.5 * len(panels), 3.8), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = None
    for index, (key, label) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        _draw_over_training(axes, result, methods, key)
        axes.set_ylabel(label)
    if title:
        figure.suptitle(title)
    if axes is not None:
        failed = [m for m in methods if not any(r.succeeded for r in result.runs_of(m))]
        _legend(axes, failed)
    return figure


def plot_nfe_over_training(result: ComparisonResult, path: Path) -> Path:
    """nfe_over_training.png: `nfe_over_training_figure`."""
    return save_figure(nfe_over_training_figure(result), path)


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


def coefficients_over_training_figure(result: ComparisonResult) -> Figure | None:
    """λ against epoch per method and term (log scale; mean over seeds, shaded min–max)
    for the coefficients that moved during training; None when none did."""
    figure = _new_figure()
    axes = figure.add_subplot()
    styles = method_styles(result.methods)
    drawn = False
    for method in result.methods:
        for line, (term, runs) in enumerate(
            sorted(coefficient_histories(result.runs_of(method)).items())
        ):
            length = min(len(r) for r in runs)
            values = np.array([r[:length] for r in runs])
            epochs = np.arange(1, length + 1)
            style = styles[method]
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
    place_legend(axes)
    return figure


def plot_coefficients_over_training(result: ComparisonResult, path: Path) -> Path | None:
    """coefficients_over_training.png: `coefficients_over_training_figure`; None (no
    file) when no coefficient moved."""
    figure = coefficients_over_training_figure(result)
    return None if figure is None else save_figure(figure, path)


def _band_alpha(methods: int) -> float:
    """Fainter min–max bands when many overlap."""
    return 0.2 if methods <= 3 else 0.1


def metric_axis(metric: Metric) -> tuple[float, str]:
    """(scale, label) of the metric axis."""
    return metric.scale, metric.axis_label


def metric_vs_prediction_time_figure(result: ComparisonResult) -> Figure:
    """Test metric against prediction time, one point per successful run."""
    scale, label = metric_axis(result.metric)
    figure = _new_figure()
    axes = figure.add_subplot()
    styles = method_styles(result.methods)
    for method in result.methods:
        summaries = [r.summary for r in result.runs_of(method) if r.summary is not None]
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
            **styles[method],
        )
    axes.set_xlabel("prediction time per test batch (ms)")
    axes.set_ylabel(label)
    axes.set_title(f"{label[0].upper()}{label[1:]} vs prediction time (one point per run)")
    axes.grid(alpha=0.3)
    _legend(axes, _methods_without_success(result))
    return figure


def plot_metric_vs_prediction_time(result: ComparisonResult, path: Path) -> Path:
    """metric_vs_prediction_time.png: `metric_vs_prediction_time_figure`."""
    return save_figure(metric_vs_prediction_time_figure(result), path)


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
    place_legend(axes, title="method")


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
    titled with that run's test metric (the NLL) and NFE; None when no run drew a density."""
    runs = density_runs(result)
    if not runs:
        return None
    metric = result.metric
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
            f"{_panel_label(method)}\n{metric.label} {run.summary['test_metric']:.3f}, "
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
