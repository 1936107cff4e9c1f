"""Compare methods over seeds: run them (`run_comparison`) and write the papers'
table and plots (`write_report`).

```python
from nderegs.report import run_comparison, write_report

result = run_comparison("configs/digits.yaml", ["vanilla", "error"], seeds=3,
                        overrides=["optim.epochs=10"], output_dir="runs/cmp")
files = write_report(result, "runs/cmp", command="my script")
again = read_comparison("runs/cmp")  # the same comparison, read back from its files
```
"""

from __future__ import annotations

import os
from pathlib import Path

from ..runners.run import FAILED, READ
from ..train import RunDirectory
from .header import machine_description, ReportHeader
from .plots import (
    over_training_figure,
    plot_coefficients_over_training,
    plot_densities,
    plot_metric_vs_prediction_time,
    plot_nfe_over_training,
)
from .runs import (
    collect_runs,
    ComparisonResult,
    default_output_dir,
    normalize_methods,
    parse_entry,
    run_dir_for,
    RunResult,
    seed_list,
    split_entries,
)
from .sweep import Grid, run_comparison, run_sweep, SweepResult, write_sweep
from .table import (
    coefficients_table,
    markdown_table,
    method_rows,
    MethodRow,
    read_csv,
    Spread,
    spread,
    write_csv,
    write_markdown,
)

__all__ = [
    "ComparisonResult",
    "Grid",
    "ReportHeader",
    "SweepResult",
    "run_sweep",
    "write_sweep",
    "collect_runs",
    "runs_table",
    "MethodRow",
    "RunResult",
    "Spread",
    "default_output_dir",
    "machine_description",
    "markdown_table",
    "method_rows",
    "normalize_methods",
    "over_training_figure",
    "parse_entry",
    "read_comparison",
    "split_entries",
    "report_header",
    "run_comparison",
    "run_dir_for",
    "seed_list",
    "spread",
    "write_report",
]

MARKDOWN = "comparison.md"
CSV = "comparison.csv"
NFE_PLOT = "nfe_over_training.png"
METRIC_PLOT = "metric_vs_prediction_time.png"
DENSITY_PLOT = "densities.png"
COEFFICIENT_PLOT = "coefficients_over_training.png"


def report_header(result: ComparisonResult | SweepResult, command: str) -> list[str]:
    """Provenance lines of a comparison's or a sweep's files (`ReportHeader.lines`):
    `command`, this machine, now, and the result's seeds and folder."""
    return ReportHeader.now(command, result.seeds, result.output_dir).lines()


def runs_table(run_dirs: dict[str, str | os.PathLike]) -> str:
    """The comparison table (Markdown) of finished runs given as label -> run directory,
    with ratios to the run labelled "vanilla"."""
    result = collect_runs(run_dirs)
    return markdown_table(method_rows(result), result.metric)


def write_report(
    result: ComparisonResult, output_dir: str | os.PathLike, command: str
) -> dict[str, Path]:
    """Write comparison.md, comparison.csv and the two PNG plots into `output_dir`.

    `command` is recorded in the headers (the exact command line that made the runs).
    Returns {"markdown", "csv", "nfe_plot", "metric_plot"} -> path, and
    "density_plot" (densities.png, the learned densities side by side) when the runs
    drew 2-D densities, and "coefficient_plot" (coefficients_over_training.png, λ over
    the epochs) when a coefficient moved during training (a budget or an anneal).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    header = ReportHeader.now(command, result.seeds, result.output_dir)
    rows = method_rows(result)
    files = {
        "markdown": output_dir / MARKDOWN,
        "csv": output_dir / CSV,
        "nfe_plot": output_dir / NFE_PLOT,
        "metric_plot": output_dir / METRIC_PLOT,
    }
    tables = markdown_table(rows, result.metric)
    if coefficients := coefficients_table(result):
        tables += "\n" + coefficients
    write_markdown(files["markdown"], header.lines(), tables)
    write_csv(files["csv"], header.lines(markdown=False), rows, result.metric)
    plot_nfe_over_training(result, files["nfe_plot"])
    plot_metric_vs_prediction_time(result, files["metric_plot"])
    if plot_densities(result, output_dir / DENSITY_PLOT) is not None:
        files["density_plot"] = output_dir / DENSITY_PLOT
    if plot_coefficients_over_training(result, output_dir / COEFFICIENT_PLOT) is not None:
        files["coefficient_plot"] = output_dir / COEFFICIENT_PLOT
    return files


def read_comparison(output_dir: str | os.PathLike) -> ComparisonResult:
    """A finished comparison read back from its folder (what `write_report` wrote there,
    and the run directories); nothing is trained.

    Its methods are the rows of `comparison.csv`, in their order; its seeds and its
    provenance (`ComparisonResult.header`: command, machine, date) are that file's
    header; each run (method m, seed k) is `run_dir_for(output_dir, m, k)`, with the
    summary of its `summary.json` and the status "read". A run without `summary.json`
    is a failed one, as in the table (its error is the table's first failure of that
    method when that names it, else the missing file), so that
    `markdown_table(method_rows(result), result.metric)` gives the table of the folder's
    `comparison.md` again, and `runs_of`, `metric` and the plots work as on the
    comparison that was run.

    Args:
        output_dir: the comparison's folder (`nderegs compare --output-dir`, or
            `write_report`'s `output_dir`), e.g. `experiments/results/digits`. The result's
            `output_dir` and run directories are under this path, wherever the header says
            the runs were written.

    Raises:
        FileNotFoundError: `output_dir` has no `comparison.csv`.
        ValueError: the header of `comparison.csv` lacks a line or cannot be read.

    Example:
        ```python
        result = read_comparison("experiments/results/digits")
        print(result.header.command, result.header.date)  # what made it, and when
        table = markdown_table(method_rows(result), result.metric)  # as in comparison.md
        error_runs = [run.summary["test_nfe"] for run in result.runs_of("error")]
        ```
    """
    folder = Path(output_dir)
    path = folder / CSV
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} holds no {CSV}: not the folder of a finished comparison "
            "(`nderegs compare --output-dir`, `write_report`)"
        )
    comments, rows = read_csv(path)
    header = ReportHeader.parse(comments, source=path)
    runs = []
    for row in rows:
        method, first_error = row["method"], row.get("first_error") or ""
        for seed in header.seeds:
            run = RunDirectory(run_dir_for(folder, method, seed))
            summary = run.read_summary()
            if summary is not None:
                runs.append(RunResult(method, seed, run.path, READ, summary=summary))
                continue
            named = f"{method} seed {seed}: "
            error = (
                first_error.removeprefix(named)
                if first_error.startswith(named)
                else f"no {run.SUMMARY} in {run.path}"
            )
            runs.append(RunResult(method, seed, run.path, FAILED, error=error))
    return ComparisonResult(
        methods=tuple(row["method"] for row in rows),
        seeds=header.seeds,
        output_dir=folder,
        runs=tuple(runs),
        header=header,
    )
