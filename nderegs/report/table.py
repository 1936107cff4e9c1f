"""The comparison table in the papers' format: one row per method, mean ± sd over the
successful seeds, and each method's mean relative to vanilla's.

`method_rows` does the arithmetic; `markdown_table` / `write_markdown` / `write_csv`
format it, as the task's `Metric` says (e.g. an accuracy shown in % in Markdown, kept as
a fraction in the CSV).
"""

from __future__ import annotations

from collections.abc import Sequence
import csv
from dataclasses import dataclass
import math
import os
from pathlib import Path
import statistics

from ..regularization import VANILLA
from ..tasks import Metric
from .runs import ComparisonResult, RunResult

#: The summary fields of the table, in column order.
QUANTITIES = (
    "train_metric",
    "test_metric",
    "train_seconds",
    "predict_seconds",
    "test_nfe",
    "train_nfe",
    "train_backward_nfe",
    "train_step_bytes",
)
#: The fields also given relative to vanilla's mean (method mean / vanilla mean).
RATIO_QUANTITIES = (
    "train_seconds",
    "predict_seconds",
    "test_nfe",
    "train_nfe",
    "train_backward_nfe",
    "test_metric",
    "train_step_bytes",
)
_MIB = 2.0**20
#: The method every other is compared with.
BASELINE = VANILLA


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation (ddof=1; None for a single value) of n values."""

    mean: float
    sd: float | None
    n: int


@dataclass(frozen=True)
class MethodRow:
    """One table row: the statistics of one method over its successful seeds."""

    method: str
    runs: int
    failed: int
    #: summary field -> Spread over the successful seeds (None if no value).
    stats: dict[str, Spread | None]
    #: summary field -> method mean / vanilla mean (empty without a vanilla row); for a
    #: metric compared `by_difference`, "test_metric" is method mean − vanilla mean.
    ratios: dict[str, float | None]
    #: "<method> seed <k>: <message>" of the first failed run, if any.
    first_error: str | None = None


def spread(values: Sequence[float | None]) -> Spread | None:
    """Mean ± sample sd of the finite values (None and NaN are left out)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    sd = statistics.stdev(finite) if len(finite) > 1 else None
    return Spread(mean=statistics.fmean(finite), sd=sd, n=len(finite))


def _difference(value: Spread | None, baseline: Spread | None) -> float | None:
    if value is None or baseline is None:
        return None
    return value.mean - baseline.mean


def _ratio(numerator: Spread | None, denominator: Spread | None) -> float | None:
    if numerator is None or denominator is None or denominator.mean == 0:
        return None
    return numerator.mean / denominator.mean


def _first_error(runs: Sequence[RunResult]) -> str | None:
    failed = next((r for r in runs if not r.succeeded), None)
    return None if failed is None else f"{failed.method} seed {failed.seed}: {failed.error}"


def method_stats(runs: Sequence[RunResult]) -> dict[str, Spread | None]:
    """Spread of every table quantity over the successful runs."""
    summaries = [r.summary for r in runs if r.summary is not None]
    return {q: spread([s.get(q) for s in summaries]) for q in QUANTITIES}


def method_rows(result: ComparisonResult) -> list[MethodRow]:
    """One row per method (in the comparison's order), with ratios to vanilla if present."""
    stats = {m: method_stats(result.runs_of(m)) for m in result.methods}
    baseline = stats.get(BASELINE)
    rows = []
    for method in result.methods:
        runs = result.runs_of(method)
        ratios = {}
        if baseline is not None:
            ratios = {q: _ratio(stats[method][q], baseline[q]) for q in RATIO_QUANTITIES}
            if result.metric.by_difference:
                ratios["test_metric"] = _difference(
                    stats[method]["test_metric"], baseline["test_metric"]
                )
        rows.append(
            MethodRow(
                method=method,
                runs=len(runs),
                failed=sum(not r.succeeded for r in runs),
                stats=stats[method],
                ratios=ratios,
                first_error=_first_error(runs),
            )
        )
    return rows


# --------------------------------------------------------------------------- #
# Formatting
# --------------------------------------------------------------------------- #


def _column_labels(metric: Metric) -> dict[str, str]:
    label = metric.column_label
    return {
        "train_metric": f"Train {label}",
        "test_metric": f"Test {label}",
        "train_seconds": "Train time (s)",
        "predict_seconds": "Prediction time (s)",
        "test_nfe": "Test NFE",
        "train_nfe": "Train NFE, forward",
        "train_backward_nfe": "Train NFE, backward",
        "train_step_bytes": "Train-step memory (MiB)",
    }


def _ratio_labels(metric: Metric) -> dict[str, str]:
    return {
        "train_seconds": "Train time ×",
        "predict_seconds": "Prediction time ×",
        "test_nfe": "NFE ×",
        "train_nfe": "Forward NFE ×",
        "train_backward_nfe": "Backward NFE ×",
        "test_metric": f"Test {metric.label} − vanilla"
        if metric.by_difference
        else f"Test {metric.label} ×",
        "train_step_bytes": "Memory ×",
    }


def _decimals(value: float, significant: int) -> int:
    """Decimals that show `value` with `significant` significant digits."""
    if value == 0 or not math.isfinite(value):
        return significant - 1
    return max(0, significant - 1 - math.floor(math.log10(abs(value))))


def _display(quantity: str, metric: Metric | None) -> tuple[float, int | None, int | None]:
    """(scale, fixed decimals, significant digits) used to show a quantity in Markdown."""
    if quantity in ("train_metric", "test_metric"):
        assert metric is not None, f"{quantity} is shown as its metric says"
        return metric.scale, metric.decimals, metric.significant
    if quantity in ("test_nfe", "train_nfe", "train_backward_nfe"):
        return 1.0, 1, None
    if quantity == "train_step_bytes":
        return 1 / _MIB, 2, None
    return 1.0, None, 3  # times


def format_spread(value: Spread | None, quantity: str, metric: Metric | None = None) -> str:
    """`mean ± sd` for Markdown; `mean ± n/a` for a single seed, `—` for no value.
    `metric` (how to show it) is needed for the metric's quantities only."""
    if value is None:
        return "—"
    scale, fixed, significant = _display(quantity, metric)
    mean = value.mean * scale
    decimals = fixed if fixed is not None else _decimals(mean, significant or 3)
    sd = "n/a" if value.sd is None else f"{value.sd * scale:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {sd}"


def _format_ratio(value: float | None, quantity: str, metric: Metric) -> str:
    """A ratio to vanilla's mean; for a metric compared `by_difference`, the difference
    from vanilla's, signed and scaled as the metric's values are shown."""
    if value is None:
        return "—"
    if quantity == "test_metric" and metric.by_difference:
        return f"{metric.scale * value:+.3f}"
    return f"{value:.2f}"


def _runs_cell(row: MethodRow, footnote: int | None) -> str:
    if row.failed == 0:
        return str(row.runs)
    return f"{row.failed}/{row.runs} failed [^{footnote}]"


def markdown_table(rows: Sequence[MethodRow], metric: Metric, drop_empty: bool = False) -> str:
    """The table (GitHub Markdown) followed by its notes and footnotes.

    With `drop_empty`, the columns without a value in any row (every cell `—`, e.g. the
    train-step memory of runs that did not record it) are left out, and so are their notes.
    """
    labels = _column_labels(metric)
    with_ratios = any(row.ratios for row in rows)
    quantities = [
        q for q in QUANTITIES if not drop_empty or any(r.stats[q] is not None for r in rows)
    ]
    ratio_quantities = [
        q
        for q in (RATIO_QUANTITIES if with_ratios else ())
        if not drop_empty or any(r.ratios.get(q) is not None for r in rows)
    ]
    header = ["Method", *(labels[q] for q in quantities)]
    header += [_ratio_labels(metric)[q] for q in ratio_quantities]
    header.append("Runs")
    lines = ["| " + " | ".join(header) + " |", "|---" + "|--:" * (len(header) - 1) + "|"]
    failures = []
    for row in rows:
        if row.failed:
            failures.append(row.first_error)
        cells = [f"`{row.method}`"]
        cells += [format_spread(row.stats[q], q, metric) for q in quantities]
        cells += [_format_ratio(row.ratios.get(q), q, metric) for q in ratio_quantities]
        cells.append(_runs_cell(row, len(failures) if row.failed else None))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    single_seed = any(_has_single_seed(row) for row in rows)
    lines += _notes(quantities, ratio_quantities, single_seed, metric)
    for number, message in enumerate(failures, start=1):
        lines.append(f"[^{number}]: first failure: {_one_line(message)}")
    return "\n".join(lines) + "\n"


def _has_single_seed(row: MethodRow) -> bool:
    return any(s is not None and s.n == 1 for s in row.stats.values())


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


#: The note on each column that needs one (in `markdown_table`'s second note).
_COLUMN_NOTES = {
    "train_seconds": "Train time: gradient + update steps, compilation excluded.",
    "predict_seconds": "Prediction time: median over repeats of one compiled forward pass "
    "on a test batch.",
    "test_nfe": "Test NFE: mean vector-field evaluations per test batch.",
    "train_nfe": "Train NFE: per training step, mean over the run; forward: the solves of "
    "the loss; backward: the vector-field evaluations of its backward pass (rebuilding "
    "what its VJPs need; `nderegs.BackwardCount`). Each forward evaluation also costs one "
    "VJP in the backward pass (Backsolve: each backward evaluation); summary.json has "
    "them as `train_backward_vjps`.",
    "train_step_bytes": "Train-step memory: the buffers of one compiled training step as XLA "
    "plans them (arguments + outputs + temporaries - aliased), an upper bound of its peak "
    "memory.",
}


def _notes(
    quantities: Sequence[str],
    ratio_quantities: Sequence[str],
    single_seed: bool,
    metric: Metric,
) -> list[str]:
    """Bullet points explaining the columns shown."""
    sd = "Mean ± sample standard deviation (ddof=1) over the successful seeds"
    if single_seed:
        sd += "; with a single successful seed the sd is undefined and shown as `n/a`"
    notes = [f"- {sd}."]
    if columns := [_COLUMN_NOTES[q] for q in quantities if q in _COLUMN_NOTES]:
        notes.append("- " + " ".join(columns))
    if ratio_quantities:
        notes.append("- Columns marked ×: the method's mean divided by vanilla's mean.")
        if metric.by_difference and "test_metric" in ratio_quantities:
            better = "positive" if metric.higher_is_better else "negative"
            unit = f"{metric.unit}; " if metric.unit else ""
            notes.append(
                f"- Test {metric.label} − vanilla: the method's mean minus vanilla's "
                f"({unit}{better} is better)."
            )
    return notes + [""]


def coefficients_table(result: ComparisonResult) -> str:
    """The coefficients the runs trained with, for the methods whose λ moved during
    training (a budget or an anneal): each term's final and mean λ, mean ± sd over the
    successful seeds ("" when no coefficient moved)."""
    lines = []
    for method in result.methods:
        summaries = [r.summary for r in result.runs_of(method) if r.summary is not None]
        terms = sorted({t for s in summaries for t in s.get("coefficients", {})})
        for term in terms:
            histories = [
                s["coefficients"][term] for s in summaries if term in s.get("coefficients", {})
            ]
            if all(len(set(h.get("by_epoch", [h["final"]]))) <= 1 for h in histories):
                continue
            final = format_spread(spread([h["final"] for h in histories]), "coefficient")
            mean = format_spread(spread([h["mean"] for h in histories]), "coefficient")
            lines.append(f"| `{method}` | {term} | {final} | {mean} |")
    if not lines:
        return ""
    return "\n".join(
        [
            "## Coefficients set during training",
            "",
            "λ of each term whose coefficient moved (a budget or an anneal): the last "
            "epoch's and the mean over the epochs, mean ± sd over the seeds.",
            "",
            "| Method | Term | Final λ | Mean λ |",
            "|---|---|--:|--:|",
            *lines,
            "",
        ]
    )


def write_markdown(path: Path, header: Sequence[str], table: str) -> None:
    """`comparison.md`: a short provenance paragraph, then the table."""
    text = "# Method comparison\n\n" + "  \n".join(header) + "\n\n" + table
    Path(path).write_text(text, encoding="utf-8")


def csv_columns(metric: Metric, with_ratios: bool) -> list[str]:
    """Column names of comparison.csv (metric fields named after the metric)."""
    field = {"train_metric": f"train_{metric.name}", "test_metric": f"test_{metric.name}"}
    columns = ["method", "runs", "failed"]
    for q in QUANTITIES:
        columns += [f"{field.get(q, q)}_mean", f"{field.get(q, q)}_sd"]
    if with_ratios:
        columns += [
            f"{field.get(q, q)}_minus_vanilla"
            if q == "test_metric" and metric.by_difference
            else f"{field.get(q, q)}_ratio_to_vanilla"
            for q in RATIO_QUANTITIES
        ]
    return columns + ["first_error"]


def read_csv(path: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """`comparison.csv` read back (`write_csv`'s counterpart): its comment lines without
    their `# `, and its rows as column -> text."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    comments = [line[2:] for line in lines if line.startswith("# ")]
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    return comments, rows


def _csv_number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _csv_spread(value: Spread | None) -> list[str]:
    if value is None:
        return ["", ""]
    return [_csv_number(value.mean), _csv_number(value.sd)]


def write_csv(path: Path, header: Sequence[str], rows: Sequence[MethodRow], metric: Metric) -> None:
    """`comparison.csv`: `#` comment lines, then one row per method (raw numbers, full
    precision, as recorded: an accuracy as a fraction; empty sd for a single seed; empty
    for no value)."""
    with_ratios = any(row.ratios for row in rows)
    with open(path, "w", newline="", encoding="utf-8") as f:
        for line in header:
            f.write(f"# {line}\n")
        f.write("# mean and sample sd (ddof=1) over successful seeds; sd empty with one seed\n")
        writer = csv.writer(f)
        writer.writerow(csv_columns(metric, with_ratios))
        for row in rows:
            cells = [row.method, row.runs, row.failed]
            for q in QUANTITIES:
                cells += _csv_spread(row.stats[q])
            if with_ratios:
                cells += [_csv_number(row.ratios.get(q)) for q in RATIO_QUANTITIES]
            cells.append(row.first_error or "")
            writer.writerow(cells)
