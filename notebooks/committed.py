"""What the paper notebooks of this folder share (`from committed import ...`; not part of
nderegs): where the repository's committed results are, and how a notebook shows them.

- `committed(table)`: `experiments/results/<table>` read back with
  `nderegs.report.read_comparison` (nothing trained), its header printed;
- `show_table(result)`: its table in the papers' format (`nderegs.report.markdown_table`,
  the function that wrote `comparison.md`, without the columns no run recorded) under a
  caption naming its folder and seeds;
- `settings(run_dir, *keys)`: the settings of a run that matter for its table, from its
  `config.yaml`;
- `print_ratios(result)`: each method's NFE, times and metric against vanilla's;
- `retrain(config, methods, ...)`: rows of a committed table trained again, in the full
  setting (`NDEREGS_RETRAIN=1`) or as miniatures (`NDEREGS_SMOKE=1`), and shown.

Jupyter runs a notebook in its own folder, so this module is on its path;
`notebooks/execute.py` puts it there wherever it runs the kernel.
"""

import os
from pathlib import Path
import tempfile

from IPython.display import display, Markdown

from nderegs.config import configs_dir
from nderegs.report import (
    markdown_table,
    method_rows,
    over_training_figure,
    read_comparison,
    run_comparison,
)
from nderegs.tasks import AbstractClassificationTask
from nderegs.train import RunDirectory

#: The smoke setting (the tests): tiny versions of the runs; their numbers mean nothing.
SMOKE = os.environ.get("NDEREGS_SMOKE") == "1"
#: Retrain rows of the committed tables (several minutes per notebook).
RETRAIN = os.environ.get("NDEREGS_RETRAIN") == "1"
#: The clone nderegs is installed from (`pip install -e .`), wherever the kernel runs.
REPO = configs_dir().parent
RESULTS = REPO / "experiments" / "results"
#: Overrides that make a miniature of a digits classifier's run (the smoke setting).
SMOKE_DIGITS = (
    "task.data.subset=256", "optim.epochs=1", "task.model.hidden_size=8", "task.model.vf_width=8",
    "solver.rtol=1e-4", "solver.atol=1e-4", "train.predict_repeats=2",
)


def rel(path):
    """A path as the repository names it (no machine-specific prefix)."""
    return Path(path).resolve().relative_to(REPO).as_posix()


def committed(table):
    """The comparison of experiments/results/<table>, read back, not trained; prints its
    header (the command, machine and date that made it, and its seeds)."""
    result = read_comparison(RESULTS / table)
    print(result.header)
    return result


def show_table(result, caption=None):
    """The comparison table (columns without any value left out) under a caption; by
    default that of a committed table, its folder in bold and its seeds."""
    if caption is None:
        caption = f"**`{rel(result.output_dir)}`** (as in its `comparison.md`; seeds {list(result.seeds)})"
    table = markdown_table(method_rows(result), result.metric, drop_empty=True)
    display(Markdown(caption + "\n\n" + table))


def settings(run_dir, *keys):
    """Prints the settings of a run that matter for its table, from its config.yaml: the
    task, solver and optimiser, then each of `keys` (dotted, as in an override) with its
    value (a constant coefficient's λ)."""
    c = RunDirectory(run_dir).read_config()
    print(f"  {c.task.name} on {c.task.data.name}; {c.solver.name}, rtol = atol = {c.solver.rtol:g}, "
          f"{c.solver.adjoint.name} adjoint; {c.optim.name} lr {c.optim.lr:g}, batch {c.optim.batch_size}, "
          f"{c.optim.epochs} epochs")
    for key in keys:
        value = c
        for part in key.split("."):
            value = getattr(value, part)
        if getattr(value, "kind", None) == "constant":
            value = value.start
        print(f"  {key}={value:g}" if isinstance(value, float) else f"  {key}={value}")


def print_ratios(result, methods=None, vanilla_of=None):
    """Prints each method's test NFE, prediction time and train time relative to vanilla's
    (its mean over the seeds divided by vanilla's), and its test accuracy in points above
    vanilla's (another metric: relative to vanilla's too). Vanilla is `result`'s own row,
    or that of the comparison `vanilla_of` (a table without a vanilla row: budgets)."""
    rows = {row.method: row for row in method_rows(result)}
    reference = {row.method: row for row in method_rows(vanilla_of or result)}["vanilla"].stats
    name = result.metric.name
    methods = [m for m in rows if m != "vanilla"] if methods is None else methods
    width = 1 + max(map(len, methods))
    for method in methods:
        stats = rows[method].stats
        ratio = {k: stats[k].mean / reference[k].mean for k in ("test_nfe", "predict_seconds", "train_seconds")}
        if result.metric == AbstractClassificationTask.metric:
            diff = stats["test_metric"].mean - reference["test_metric"].mean
            metric = f"test {name} {100 * diff:+.2f} points"
        else:
            metric = f"test {name.upper()} × {stats['test_metric'].mean / reference['test_metric'].mean:.2f}"
        print(f"{method:>{width}}: test NFE × {ratio['test_nfe']:.2f}, prediction time × "
              f"{ratio['predict_seconds']:.2f}, train time × {ratio['train_seconds']:.2f}, {metric}")


def retrain(config, methods, folder, name, smoke_overrides=SMOKE_DIGITS):
    """Trains `methods` with experiments/configs/<config> and shows their table and their
    test NFE and metric over training, captioned "<name>, retrained here": 3 seeds into
    runs/notebooks/<folder>/ (runs already there are read back), or in the smoke setting
    1 seed of miniatures (`smoke_overrides`) into a temporary folder. Returns the
    comparison."""
    output = Path(tempfile.mkdtemp(prefix="nderegs-notebook-")) if SMOKE else REPO / "runs" / "notebooks" / folder
    retrained = run_comparison(
        REPO / "experiments" / "configs" / config, methods, seeds=1 if SMOKE else 3,
        overrides=smoke_overrides if SMOKE else (), output_dir=output, progress=False,
    )
    show_table(retrained, f"**{name}, retrained here**" + (" (smoke setting: miniatures)" if SMOKE else ""))
    metric = f"test_{retrained.metric.name}"
    display(over_training_figure(retrained, [("test_nfe", "test NFE"), (metric, metric.replace("_", " "))],
                                 title=f"{name}, retrained here"))
    return retrained
