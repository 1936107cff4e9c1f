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

# %%
import os
from pathlib import Path
import tempfile

import matplotlib

SMOKE = os.environ.get("NDEREGS_SMOKE") == "1"
if SMOKE:
    matplotlib.use("Agg")
import diffrax
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import nderegs
from nderegs.config import configs_dir, load_config
from nderegs.report import runs_table
from nderegs.train import RunDirectory, train

CONFIGS = configs_dir()  # the repository's configs/, wherever the notebook runs from
RUNS = Path(tempfile.mkdtemp(prefix="nderegs-paper2-"))
SMOKE_DIGITS = [
    "task.data.subset=256", "optim.epochs=1", "task.model.hidden_size=8", "task.model.vf_width=8",
    "solver.rtol=1e-4", "solver.atol=1e-4", "train.predict_repeats=2",
]
COMMON = ["train.progress=false"]
NUM_KEYS = 200 if SMOKE else 4000
print(f"SMOKE={SMOKE}; {NUM_KEYS} keys; runs are written to a temporary folder, {RUNS.name}")

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
# jumps of the oscillator, shaded by the solution's $|y_2|$ below).

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
# ## Training the digits classifier with local regularization
#
# Same model as in `paper1_global.ipynb` (`configs/digits.yaml`). Methods:
#
# - `vanilla`;
# - `local-error`: unbiased sampling, main solve by `RecursiveCheckpointAdjoint`;
# - `local-error-biased`: biased sampling;
# - `local-error` with `solver.adjoint=backsolve`: the main solve is differentiated by
#   `BacksolveAdjoint` (continuous adjoint, $O(1)$ memory in the number of steps) — possible
#   only because the regularizer needs nothing but the one re-taken step;
# - `local-error` with `regularization.local_gradient=trajectory`: the re-taken step starts
#   from the state $y(t)$ saved by the main solve, and its gradient flows into that state too,
#   so the regularizer can move the *trajectory* to where steps are cheap (paper 2's estimator
#   holds the start state constant). On a field ending in tanh only this variant lowers the
#   NFE (see `experiments/README.md`); it works with `BacksolveAdjoint` as well.
#
# The coefficient is `regularization.error` ($\lambda = 0.1$), applied to $w\cdot$`local_error`.

# %%
RUN_SPECS = {
    "vanilla": ["method=vanilla"],
    "local-error": ["method=local-error"],
    "local-error-biased": ["method=local-error-biased"],
    "local-error backsolve": ["method=local-error", "solver.adjoint=backsolve"],
    "local-error trajectory": ["method=local-error", "regularization.local_gradient=trajectory"],
}


def run(label, overrides):
    config = load_config(CONFIGS / "digits.yaml",
                         [*(SMOKE_DIGITS if SMOKE else ()), *COMMON, *overrides])
    run_dir = RUNS / label.replace(" ", "-")
    return run_dir, train(config, run_dir=run_dir)


digits = {}
for label, overrides in RUN_SPECS.items():
    digits[label] = run(label, overrides)
    print(f"{label:>22}: test accuracy {digits[label][1]['test_metric']:.3f}, "
          f"test NFE {digits[label][1]['test_nfe']:.0f}")

# %%
def table(runs):
    """The comparison table of the runs (nderegs.report), with ratios to vanilla."""
    print(runs_table({label: run_dir for label, (run_dir, _) in runs.items()}))


table(digits)

# %%
def read_metrics(run_dir):
    return RunDirectory(run_dir).read_metrics()


fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for label, (run_dir, _) in digits.items():
    rows = read_metrics(run_dir)
    epochs = [r["epoch"] for r in rows]
    axes[0].plot(epochs, [r["test_nfe"] for r in rows], "o-", label=label)
    axes[1].plot(epochs, [r["test_accuracy"] for r in rows], "o-", label=label)
axes[0].set(xlabel="epoch", ylabel="test NFE", title="NFE over training")
axes[1].set(xlabel="epoch", ylabel="test accuracy", title="test accuracy")
for ax in axes:
    ax.legend()
fig.tight_layout()
plt.show()
