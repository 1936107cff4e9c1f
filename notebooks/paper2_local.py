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
# # Paper 2: local regularization
#
# Pal, Edelman, Rackauckas, *Locally Regularized Neural Differential Equations: Some Black
# Boxes Were Meant to Remain Closed!* (ICML 2023).
#
# The global $R_E = \sum_j \mathrm{EEst}_j|\Delta t_j|$ of paper 1 needs gradients through
# every step of the solver. Paper 2 regularizes **one randomly sampled step** per training
# step instead: the main solve runs with any adjoint (e.g. a memory-light continuous adjoint),
# and afterwards one accepted step $j$ is re-taken, differentiably, from its start state
# $y_j$ (held constant) with its own $\Delta t_j$. That costs one step's stages
# (`h.local_nfe`, 7 for Tsit5) and a tiny graph.
#
# Two ways to draw the step, each with a constant weight $w$ that makes
# $w\,\mathrm{EEst}_j|\Delta t_j|$ an **unbiased estimate of $R_E$**:
#
# | `local=` | draw | $P(j)$ | weight $w$ |
# |---|---|---|---|
# | `"unbiased"` | $t\sim U[t_0,t_1]$, $j$ = the step containing $t$ | $|\Delta t_j|/|t_1-t_0|$ | $|t_1-t_0|/|\Delta t_j|$ |
# | `"biased"` | $j$ uniform over the $N$ accepted steps | $1/N$ | $N$ |
#
# In both cases $\mathbb{E}[w\,\mathrm{EEst}_j|\Delta t_j|] = \sum_j P(j)\,w_j\,\mathrm{EEst}_j|\Delta t_j| = R_E$.
# The names follow the paper: "unbiased" samples *time* uniformly, "biased" samples *steps*
# uniformly, so it lands more often where the solver takes many small steps, i.e. where the
# dynamics are hard. (The training loop scales the local term by $w$, so a coefficient
# $\lambda$ means the same for local and global regularization.)
#
# **Where the numbers come from.** The first part (the estimator on a van der Pol
# oscillator) computes live, in seconds. The training tables and figures are the committed
# results in `experiments/results/` — 3 seeds per method on a 2-core CPU machine, made by
# `bash experiments/reproduce.sh digits_paper2 digits` (each table's exact command, machine
# and date are printed with it) — read back from their run directories; nothing is trained.
#
# - `NDEREGS_RETRAIN=1` in the environment retrains four rows of the paper-2 table (3 seeds,
#   the committed config; about 5 minutes on 2 CPU cores) and shows them next to the
#   committed ones (expect figures close to the committed ones, not always identical, and
#   other timings: compare those as ratios).
# - `NDEREGS_SMOKE=1` (the tests) uses fewer keys and trains tiny versions of those runs
#   (256 examples, 1 epoch) through the same code; their numbers mean nothing.

# %%
import csv
import os
from pathlib import Path
import tempfile

import diffrax
from IPython.display import display, Markdown
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import nderegs
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


NUM_KEYS = 200 if SMOKE else 4000
print(f"SMOKE={SMOKE}, RETRAIN={RETRAIN}; {NUM_KEYS} keys; committed results read from {rel(RESULTS)}/")

# %% [markdown]
# ## The local estimate averages to $R_E$
#
# A van der Pol oscillator ($\mu = 5$: slow stretches and fast jumps, so step sizes vary a
# lot) solved once per key under `jax.vmap`; each solve returns the same global $R_E$ and one
# sampled local term. The mean of $w\cdot$`local_error` over the keys should match $R_E$ within
# a few standard errors, for both samplings.

# %%
def van_der_pol(t, y, mu):
    return jnp.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])


TERM = diffrax.ODETerm(van_der_pol)
CONTROLLER = diffrax.PIDController(rtol=1e-5, atol=1e-5)
Y0, T1, MU = jnp.array([2.0, 0.0]), 6.0, 5.0


def local_samples(sampling, n):
    def one(key):
        return nderegs.solve(TERM, diffrax.Tsit5(), 0.0, T1, None, Y0, MU,
                             stepsize_controller=CONTROLLER, local=sampling, key=key)[1]

    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), n))


samples = {s: local_samples(s, NUM_KEYS) for s in ("unbiased", "biased")}
for sampling, h in samples.items():
    estimate = np.asarray(h.local_weight * h.local_error)
    r_e = float(h.error[0])
    stderr = estimate.std() / np.sqrt(len(estimate))
    print(f"{sampling:>8}: mean of w·local_error = {estimate.mean():.4f} ± {stderr:.4f} (s.e.)   "
          f"R_E = {r_e:.4f}   ({abs(estimate.mean() - r_e) / stderr:.1f} s.e. apart)")
print(f"accepted steps: {int(samples['unbiased'].num_accepted_steps[0])}, "
      f"local_nfe = {int(np.ravel(samples['unbiased'].local_nfe)[0])} evaluations per sample")

# %% [markdown]
# Where the samples land: unbiased sampling draws $t$ uniformly, biased sampling draws the
# start of a uniformly chosen step, so it concentrates where the steps are short (the fast
# jumps of the oscillator, where the solution's $|y_2|$, drawn in black, peaks).

# %%
sol = diffrax.diffeqsolve(TERM, diffrax.Tsit5(), 0.0, T1, None, Y0, MU, stepsize_controller=CONTROLLER,
                          saveat=diffrax.SaveAt(ts=jnp.linspace(0.0, T1, 300)))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
bins = np.linspace(0.0, T1, 40)
for sampling, h in samples.items():
    axes[0].hist(np.asarray(h.local_t), bins=bins, alpha=0.6, density=True, label=sampling)
axes[0].plot(sol.ts, np.abs(sol.ys[:, 1]) / np.abs(sol.ys[:, 1]).max(), "k-", lw=0.8, label="|y₂| (scaled)")
axes[0].set(xlabel="t", ylabel="density of local_t", title="sampled times")
for sampling, h in samples.items():
    estimate = np.asarray(h.local_weight * h.local_error)
    running = np.cumsum(estimate) / np.arange(1, len(estimate) + 1)
    axes[1].plot(running, label=sampling)
axes[1].axhline(float(samples["unbiased"].error[0]), color="k", ls="--", label="$R_E$")
axes[1].set(xlabel="number of keys", ylabel="running mean of w·local_error", title="unbiasedness", xscale="log")
for ax in axes:
    ax.legend()
fig.tight_layout()
plt.show()

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
    coefficient = c.regularization.error
    value = f"{coefficient.start:g}" if coefficient.kind == "constant" else coefficient
    print(f"  vector field ends in {c.task.model.field_output_activation}; regularization.error "
          f"(λ of the global and the local error terms): {value}")


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
# ## Training the digits classifier with local regularization
#
# The training loop scales the local term by $w$, so one coefficient $\lambda$
# (`regularization.error`) means the same for the global term ($\lambda R_E$, method
# `error`) and the local one ($\lambda\, w\,\mathrm{EEst}_j|\Delta t_j|$, methods
# `local-error` and `local-error-biased`). Variants, as per-row overrides:
#
# - `solver.adjoint=backsolve`: the main solve is differentiated by `BacksolveAdjoint`
#   (continuous adjoint, $O(1)$ memory in the number of steps) — possible only because the
#   local regularizer needs nothing but the one re-taken step; the global term cannot
#   (it needs gradients through the solver's steps);
# - `regularization.local_gradient=trajectory`: the re-taken step starts from the state
#   $y(t)$ saved by the main solve, and its gradient flows into that state too, so the
#   regularizer can move the *trajectory* to where steps are cheap (paper 2's estimator
#   holds the start state constant).
#
# ### Paper 2's architecture
#
# `experiments/configs/digits_paper2.yaml`: the classifier of `paper1_global.ipynb` with
# paper 2's vector field, whose last layer is linear (Dense → tanh → Dense), each method
# with both adjoints. *Train-step memory* is the compiled training step's buffers as XLA
# plans them (an upper bound of its peak).

# %%
paper2 = committed("digits_paper2")
settings(paper2.runs_of("local-error")[0].run_dir)
show_table(paper2, f"**`{rel(paper2.output_dir)}`** (as in its `comparison.md`; seeds {list(paper2.seeds)})")

# %%
SHOWN = ["vanilla", "error", "local-error", "local-error-biased", "local-error[solver.adjoint=backsolve]"]
plot_over_training(paper2, SHOWN, [("test_nfe", "test NFE"), ("test_accuracy", "test accuracy")],
                   "paper 2's architecture: mean over 3 seeds, band min–max")

fig, ax = plt.subplots(figsize=(11, 4.2))
for i, row in enumerate(method_rows(paper2)):
    backsolve = "backsolve" in row.method
    ax.scatter(row.stats["train_step_bytes"].mean / 2**20, row.stats["test_nfe"].mean, s=60,
               color=f"C{i % 10}", marker="s" if backsolve else "o", label=row.method)
ax.set(xlabel="train-step memory (MiB)", ylabel="test NFE (mean of 3 seeds)",
       title="memory and NFE per method (squares: BacksolveAdjoint)")
ax.grid(alpha=0.3)
ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.02, 0.5))
fig.tight_layout()
plt.show()

# %% [markdown]
# On this architecture both local samplings cut the test NFE by about 40 % at about vanilla's
# accuracy, with either adjoint, and with `BacksolveAdjoint` the whole training step needs a
# small fraction of the memory of a step differentiated through the solver. The variants
# whose gradient reaches the trajectory fail here: the global `error` term at the same
# coefficient ends with a *higher* NFE than vanilla's and a lower accuracy, and the
# `local_gradient=trajectory` rows do not lower the NFE either and lose accuracy. The ratios,
# from the table's runs:

# %%
rows = {row.method: row for row in method_rows(paper2)}
vanilla = rows["vanilla"].stats["test_metric"].mean
for method, row in rows.items():
    print(f"test NFE × {row.ratios['test_nfe']:.2f} | memory × {row.ratios['train_step_bytes']:.2f} | "
          f"test accuracy {100 * (row.stats['test_metric'].mean - vanilla):+.2f} points | {method}")

# %% [markdown]
# ### Paper 1's architecture
#
# On the field of `paper1_global.ipynb`, which ends in tanh, it is the other way round
# (rows of `experiments/results/digits`): the global method lowers the NFE by moving the
# trajectory to where the final tanh saturates, which paper 2's estimator (start state
# held constant) cannot do — `local-error` and `local-error-biased` leave the NFE near
# vanilla's — while `local_gradient=trajectory` matches the global method at one step's
# cost. So `trajectory` is a switch to try per architecture; `step` (paper 2) is the
# default. `experiments/README.md` discusses both tables.

# %%
digits = committed("digits")
TANH_ROWS = ["vanilla", "error", "local-error", "local-error-biased",
             "local-error[regularization.local_gradient=trajectory]"]
tanh = ComparisonResult(tuple(TANH_ROWS), digits.seeds, digits.output_dir,
                        tuple(r for r in digits.runs if r.method in TANH_ROWS))
show_table(tanh, f"**`{rel(digits.output_dir)}`**, the local rows (as in its `comparison.md`; seeds {list(digits.seeds)})")
plot_over_training(tanh, TANH_ROWS, [("test_nfe", "test NFE")], "tanh-output field: mean over 3 seeds, band min–max")

# %% [markdown]
# ## Training it yourself
#
# `nderegs.report.run_comparison` is what `nderegs compare` runs: every method × seed with
# the config, one run directory each (re-running skips finished runs); a method entry may
# carry its own overrides in brackets. With `NDEREGS_RETRAIN=1` the cell below retrains
# four rows of the paper-2 table into `runs/notebooks/paper2_local/` (3 seeds, the committed
# config); with `NDEREGS_SMOKE=1` it trains 1-epoch miniatures into a temporary folder.
# Otherwise it does nothing.

# %%
RETRAINED = ["vanilla", "local-error", "local-error-biased", "local-error[solver.adjoint=backsolve]"]
SMOKE_OVERRIDES = [
    "task.data.subset=256", "optim.epochs=1", "task.model.hidden_size=8", "task.model.vf_width=8",
    "solver.rtol=1e-4", "solver.atol=1e-4", "train.predict_repeats=2",
]
if SMOKE or RETRAIN:
    output = Path(tempfile.mkdtemp(prefix="nderegs-paper2-")) if SMOKE else REPO / "runs" / "notebooks" / "paper2_local"
    retrained = run_comparison(
        REPO / "experiments" / "configs" / "digits_paper2.yaml", RETRAINED, seeds=1 if SMOKE else 3,
        overrides=SMOKE_OVERRIDES if SMOKE else (), output_dir=output, progress=False,
    )
    show_table(retrained, "**retrained here**" + (" (smoke setting: miniatures)" if SMOKE else ""))
    plot_over_training(retrained, RETRAINED, [("test_nfe", "test NFE"), ("test_accuracy", "test accuracy")],
                       "paper 2's architecture, retrained here")
else:
    print("Not retrained: set NDEREGS_RETRAIN=1 to retrain four rows of the paper-2 table (about 5 minutes on 2 CPU cores).")
