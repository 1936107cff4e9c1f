"""Compare methods over seeds: run them (`run_comparison`) and write the papers'
table and plots (`write_report`).

```python
from nderegs.report import run_comparison, write_report

result = run_comparison("configs/digits.yaml", ["vanilla", "error"], seeds=3,
                        overrides=["optim.epochs=10"], output_dir="runs/cmp")
files = write_report(result, "runs/cmp", command="my script")
```
"""

from __future__ import annotations

from datetime import datetime, UTC
import os
from pathlib import Path
import platform

from .plots import (
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
    run_comparison,
    run_dir_for,
    RunResult,
    seed_list,
    split_entries,
)
from .sweep import Grid, run_sweep, SweepResult, write_sweep
from .table import (
    coefficients_table,
    markdown_table,
    method_rows,
    MethodRow,
    Spread,
    spread,
    write_csv,
    write_markdown,
)

__all__ = [
    "ComparisonResult",
    "Grid",
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
    "parse_entry",
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


def machine_description() -> str:
    """CPU cores, OS platform, and JAX's version, backend and devices."""
    import jax

    devices = ", ".join(f"{d} ({d.device_kind})" for d in jax.devices())
    return (
        f"{os.cpu_count()} CPU cores, {platform.platform()}; JAX {jax.__version__}, "
        f"backend {jax.default_backend()}, devices: {devices}"
    )


def report_header(result: ComparisonResult | SweepResult, command: str) -> list[str]:
    """Provenance lines of a comparison's or a sweep's files."""
    date = datetime.now(UTC).isoformat(timespec="seconds")
    return [
        f"Command: `{command}`",
        f"Machine: {machine_description()}",
        f"Date (UTC): {date}",
        f"Seeds: {', '.join(map(str, result.seeds))}; runs in {result.output_dir}",
    ]


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
    header = report_header(result, command)
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
    write_markdown(files["markdown"], header, tables)
    write_csv(files["csv"], [h.replace("`", "") for h in header], rows, result.metric)
    plot_nfe_over_training(result, files["nfe_plot"])
    plot_metric_vs_prediction_time(result, files["metric_plot"])
    if plot_densities(result, output_dir / DENSITY_PLOT) is not None:
        files["density_plot"] = output_dir / DENSITY_PLOT
    if plot_coefficients_over_training(result, output_dir / COEFFICIENT_PLOT) is not None:
        files["coefficient_plot"] = output_dir / COEFFICIENT_PLOT
    return files
