# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Paper 1: global error and stiffness regularization
#
# Pal, Ma, Shah, Rackauckas, *Opening the Blackbox: Accelerating Neural Differential
# Equations by Regularizing Internal Solver Heuristics* (ICML 2021).
#
# The training loss of a neural ODE gets the solver's own heuristics, summed over the
# accepted steps $j$ of the forward solve:
#
# $$\mathcal{L} = \mathcal{L}_{\text{task}} + \lambda_E\, R_E + \lambda_S\, R_S,\qquad
#   R_E = \sum_j \mathrm{EEst}_j\,|\Delta t_j|,\qquad R_S = \sum_j S_j\,|\Delta t_j| ,$$
#
# with $\mathrm{EEst}_j$ the scaled embedded error the step-size controller compares with 1 and
# $S_j = \|f(g_7)-f(g_6)\|/\|g_7-g_6\|$ Tsit5's stiffness estimate (stages 6 and 7 share
# the abscissa $c=1$). Both come from stages the solver computed anyway: zero extra
# evaluations. Gradients are taken through the solver (discretise-then-optimise).
#
# Here: paper 1's MNIST table on scikit-learn's 8×8 digits (a neural ODE classifier:
# $x \to$ linear $\to$ ODE on $[0,1]$ with Tsit5 $\to$ linear $\to$ logits), and its
# PhysioNet table on a synthetic irregularly sampled data set (a latent ODE).
#
# **Where the numbers come from.** The tables and figures below are the committed results
# in `experiments/results/` — 3 seeds per method on a 2-core CPU machine, made by
# `bash experiments/reproduce.sh digits latent_ode` (each table's exact command, machine and
# date are printed with it) — read back from their run directories (`config.yaml`,
# `metrics.jsonl`, `summary.json`); nothing is trained, so the notebook runs in seconds.
#
# - `NDEREGS_RETRAIN=1` in the environment retrains the four paper-1 methods on the digits
#   with the same config and 3 seeds (about 5 minutes on 2 CPU cores) and shows their table
#   next to the committed one (expect figures close to the committed ones, not always
#   identical, and other timings: compare those as ratios).
# - `NDEREGS_SMOKE=1` (the tests) trains tiny versions of those runs (256 examples, 1 epoch)
#   through the same code; their numbers mean nothing.

# %%
import csv
import os
from pathlib import Path
import tempfile

from IPython.display import display, Markdown
import matplotlib.pyplot as plt
import numpy as np

from nderegs.config import configs_dir
from nderegs.report import (
    ComparisonResult,
    markdown_table,
    method_rows,
    run_comparison,
    run_dir_for,
    RunResult,
)
from nderegs.train import RunDirectory

SMOKE = os.environ.get("NDEREGS_SMOKE") == "1"
RETRAIN = os.environ.get("NDEREGS_RETRAIN") == "1"


def find_repository():
    """The repository of this notebook: the parent of notebooks/ (Jupyter runs a notebook
    in its own folder), else the one nderegs is installed from (`pip install -e .`)."""
    for candidate in (Path.cwd().parent, configs_dir().parent):
        if (candidate / "experiments" / "results").is_dir():
            return candidate.resolve()
    raise FileNotFoundError("no experiments/results/: run this notebook from notebooks/ of a clone")


REPO = find_repository()
RESULTS = REPO / "experiments" / "results"


def rel(path):
    """A path as the repository names it (no machine-specific prefix)."""
    return Path(path).resolve().relative_to(REPO).as_posix()


print(f"SMOKE={SMOKE}, RETRAIN={RETRAIN}; committed results read from {rel(RESULTS)}/")

# %% [markdown]
# Four helpers: `committed` reads a committed comparison back (its rows and seeds are those
# of its `comparison.csv`, its runs those of its folder) and prints where it comes from,
# `show_table` prints a comparison in the papers' format (`nderegs.report.markdown_table`,
# the function that wrote `comparison.md`), `settings` prints the settings of a run from
# its `config.yaml`, and `plot_over_training` draws columns of `metrics.jsonl` over the
# epochs (mean over seeds, shaded from min to max).

# %%
def committed(table):
    """The ComparisonResult of experiments/results/<table>, read back, not trained; prints
    the command, machine and date of its header."""
    folder = RESULTS / table
    lines = (folder / "comparison.csv").read_text(encoding="utf-8").splitlines()
    header = dict(line[2:].split(": ", 1) for line in lines if line.startswith("# ") and ": " in line)
    methods = [row["method"] for row in csv.DictReader(x for x in lines if not x.startswith("#"))]
    seeds = [int(s) for s in header["Seeds"].split(";")[0].split(",")]
    runs = [
        RunResult(m, s, run_dir_for(folder, m, s), "skipped",
                  summary=RunDirectory(run_dir_for(folder, m, s)).read_summary())
        for m in methods for s in seeds
    ]
    for key in ("Command", "Machine", "Date (UTC)"):
        print(f"{key}: {header[key]}")
    return ComparisonResult(tuple(methods), tuple(seeds), folder, tuple(runs))


def show_table(result, caption):
    """The comparison table (columns without any value left out) under a caption."""
    lines = markdown_table(method_rows(result), result.metric).splitlines()
    rows = [i for i, line in enumerate(lines) if line.startswith("|")]
    cells = [lines[i].strip("|").split("|") for i in rows]
    keep = [j for j in range(len(cells[0])) if any(c[j].strip() != "—" for c in cells[2:])]
    for i, c in zip(rows, cells):
        lines[i] = "|" + "|".join(c[j] for j in keep) + "|"
    dropped = [c.strip() for j, c in enumerate(cells[0]) if j not in keep]
    for column in dropped:  # and the note on that column
        lines = [line.split(f" {column.split(' (')[0]}:")[0] for line in lines]
    display(Markdown(caption + "\n\n" + "\n".join(lines)))


def settings(run_dir):
    """The settings of a run that matter for the table, from its config.yaml."""
    c = RunDirectory(run_dir).read_config()
    print(f"  {c.task.name} on {c.task.data.name}; {c.solver.name}, rtol = atol = {c.solver.rtol:g}, "
          f"{c.solver.adjoint.name} adjoint; {c.optim.name} lr {c.optim.lr:g}, batch {c.optim.batch_size}, "
          f"{c.optim.epochs} epochs")
    for term in ("error", "stiffness"):
        coefficient = getattr(c.regularization, term)
        value = f"{coefficient.start:g}" if coefficient.kind == "constant" else coefficient
        print(f"  regularization.{term} (λ of the `{term}` term): {value}")


def plot_over_training(result, methods, panels, title):
    """Each panel: one metrics.jsonl column (key, label) against the epoch."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        for i, method in enumerate(methods):
            curves = [{r["epoch"]: r[key] for r in RunDirectory(run.run_dir).read_metrics()}
                      for run in result.runs_of(method) if run.succeeded]
            epochs = sorted(set.intersection(*(set(c) for c in curves)))
            values = np.array([[c[e] for e in epochs] for c in curves])
            ax.plot(epochs, values.mean(axis=0), "o-", ms=3, color=f"C{i}", label=method)
            ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=f"C{i}", alpha=0.15, lw=0)
        ax.set(xlabel="epoch", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    plt.show()


# %% [markdown]
# ## The digits classifier (paper 1's MNIST table)
#
# The config is `experiments/configs/digits.yaml` (its header says how the coefficients
# were chosen): tight tolerances as in the paper, so that the NFE matters, and one constant
# coefficient per term. The table has every method of the repository; the paper-1 methods
# are `vanilla`, `error` ($\lambda_E R_E$), `stiffness` ($\lambda_S R_S$) and
# `error+stiffness`. *Train time* sums the wall time of the gradient + update steps
# (compilation excluded), *prediction time* is one compiled forward pass on a test batch,
# *NFE* the vector-field evaluations of a forward pass on a test batch (one step size for
# the whole batch).

# %%
digits = committed("digits")
settings(digits.runs_of("error")[0].run_dir)
show_table(digits, f"**`{rel(digits.output_dir)}`** (as in its `comparison.md`; seeds {list(digits.seeds)})")

# %%
PAPER1 = ["vanilla", "error", "stiffness", "error+stiffness"]
plot_over_training(digits, PAPER1, [("test_nfe", "test NFE"), ("test_accuracy", "test accuracy")],
                   "digits, paper-1 methods: mean over 3 seeds, band min–max")

# %% [markdown]
# What the table and the curves show: `error` and `error+stiffness` roughly halve the test
# NFE at an accuracy within about a point of vanilla's, and predict and train faster;
# `stiffness` alone leaves the NFE where vanilla's is. Over training, vanilla's NFE climbs
# in the first epochs and stays up, while the error-regularized runs' NFE drops after a few
# epochs and stays down as their accuracy catches up with vanilla's. The ratios, from the
# table's runs:

# %%
rows = {row.method: row for row in method_rows(digits)}
vanilla = rows["vanilla"].stats["test_metric"].mean
for method in PAPER1[1:]:
    row = rows[method]
    print(f"{method:>16}: test NFE × {row.ratios['test_nfe']:.2f}, prediction time × "
          f"{row.ratios['predict_seconds']:.2f}, train time × {row.ratios['train_seconds']:.2f}, "
          f"test accuracy {100 * (row.stats['test_metric'].mean - vanilla):+.2f} points")

# %% [markdown]
# Every method, one point per run (3 seeds each): the regularizers that lower the NFE
# without losing accuracy sit in the upper left.

# %%
fig, ax = plt.subplots(figsize=(8, 4.5))
for i, method in enumerate(digits.methods):
    summaries = [r.summary for r in digits.runs_of(method) if r.succeeded]
    ax.scatter([s["test_nfe"] for s in summaries], [100 * s["test_metric"] for s in summaries],
               color=f"C{i % 10}", marker="os^Dv"[i // 10 % 5], label=method, alpha=0.85)
ax.set(xlabel="test NFE", ylabel="test accuracy (%)", title="digits: every run of the table")
ax.grid(alpha=0.3)
ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.02, 0.5))
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The latent ODE (paper 1's PhysioNet table)
#
# `experiments/configs/latent_ode.yaml`: a latent ODE (ODE-RNN-style encoder, Tsit5 in the
# latent space, tolerance $10^{-7}$) interpolating synthetic irregularly sampled series
# with masks; the metric is the test MSE (lower is better). PhysioNet itself is
# `configs/latent_ode_physionet.yaml` with `task.data.path=...`.

# %%
latent = committed("latent_ode")
settings(latent.runs_of("error")[0].run_dir)
show_table(latent, f"**`{rel(latent.output_dir)}`** (as in its `comparison.md`; seeds {list(latent.seeds)})")
plot_over_training(latent, ["vanilla", "error", "stiffness"],
                   [("test_nfe", "test NFE"), ("test_mse", "test MSE")],
                   "latent ODE: mean over 3 seeds, band min–max")

# %% [markdown]
# Here `error` keeps the test NFE nearly flat from the first epoch and ends at about half of
# vanilla's, which grows in the second half of training and varies a lot from seed to seed
# (the wide band); the price is a few percent of MSE. `stiffness` again barely moves the NFE.
#
# ## Training it yourself
#
# `nderegs.report.run_comparison` is what `nderegs compare` runs: every method × seed
# with the config, one run directory each (re-running skips finished runs). With
# `NDEREGS_RETRAIN=1` the cell below retrains the paper-1 rows of the digits table into
# `runs/notebooks/paper1_global/` (3 seeds, the committed config); with `NDEREGS_SMOKE=1`
# it trains 1-epoch miniatures into a temporary folder. Otherwise it does nothing.

# %%
SMOKE_OVERRIDES = [
    "task.data.subset=256", "optim.epochs=1", "task.model.hidden_size=8", "task.model.vf_width=8",
    "solver.rtol=1e-4", "solver.atol=1e-4", "train.predict_repeats=2",
]
if SMOKE or RETRAIN:
    output = Path(tempfile.mkdtemp(prefix="nderegs-paper1-")) if SMOKE else REPO / "runs" / "notebooks" / "paper1_global"
    retrained = run_comparison(
        REPO / "experiments" / "configs" / "digits.yaml", PAPER1, seeds=1 if SMOKE else 3,
        overrides=SMOKE_OVERRIDES if SMOKE else (), output_dir=output, progress=False,
    )
    show_table(retrained, "**retrained here**" + (" (smoke setting: miniatures)" if SMOKE else ""))
    plot_over_training(retrained, PAPER1, [("test_nfe", "test NFE"), ("test_accuracy", "test accuracy")],
                       "digits, retrained here")
else:
    print("Not retrained: set NDEREGS_RETRAIN=1 to retrain the paper-1 rows (about 5 minutes on 2 CPU cores).")

# %% [markdown]
# ## Neural SDEs
#
# Paper 1 also regularizes neural SDEs (spiral SDE, MNIST SDE): with an adaptive SDE solver
# EEst is again the scaled error the controller uses. Those experiments are in
# `neural_sdes.ipynb`; paper 2's local regularization is in `paper2_local.ipynb`.
