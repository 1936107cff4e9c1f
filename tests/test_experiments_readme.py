"""experiments/README.md quotes the committed results: no training, committed files only.

Every number of the README that states a result is a field of a claim in `claims()`: the
claim's text, with the values computed here from the committed files (the comparison
CSVs, the sweep's CSV, the tables' headers and the run directories' config.yaml)
formatted into its fields, must appear in the README (line breaks, runs of spaces and
the minus sign normalized). Every other number of the README must lie in one of the
fragments of `NOT_RESULTS` (targets, selection rules, names). So a result that changes, a
README number edited by hand, or a new number that nothing checks fails, naming the
sentence, the number printed and the value the committed files give.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
import functools
from pathlib import Path
import re
import statistics
import string

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "experiments" / "README.md"
RESULTS = REPO / "experiments" / "results"

# The tables (directories under experiments/results) and the methods as the CSVs name them.
D, P2, LAT, SPI, SDE = "digits", "digits_paper2", "latent_ode", "spiral_sde", "digits_sde"
MOONS, PINWHEEL = "cnf_2d/moons", "cnf_2d/pinwheel"
M1, M1B, M2, MSDE = "mnist_paper1", "mnist_paper1_budget", "mnist_paper2", "mnist_sde"
TABLES = (D, P2, LAT, SPI, SDE, MOONS, PINWHEEL, M1, M1B, M2, MSDE)
TRAJ = "local-error[regularization.local_gradient=trajectory]"
TRAJ_BIASED = "local-error-biased[regularization.local_gradient=trajectory]"
BACKSOLVE = "solver.adjoint=backsolve"
STEER, RNODE, TAYNODE = (
    "steer[regularization.steer_b=0.25]",
    "rnode[regularization.kinetic.start=0.03,regularization.jacobian.start=0.1]",
    "taynode[regularization.taynode.start=0.1]",
)
MIB = 2.0**20

#: Numbers of the README that are not results, each in the fragment that says why:
#: the targets and selection rules (set before the runs), names and a fact of theory.
NOT_RESULTS = (
    "paper 1",
    "paper 2",
    "Kidger et al., 2021",
    "Paper 2",
    "2-D",
    "O(1)-memory",
    "SPaRK's estimate has order 1",
    "within 1 point of",
    "within 0.05 nats of vanilla",
    "outside the 0.05 band",
    # the target column of "Against the targets"
    "test NFE ≤ 0.6, prediction ≤ 0.65, accuracy within 1 point, train time ≤ 1.0",
    "test NFE ≤ 0.6, accuracy within 1 point, train time ≤ 0.8",
    "train time ≤ 1.0 |",
    "test NFE ≤ 0.6, accuracy within 1 point, train time ≤ 1.0",
    "train-step memory of local ≤ 0.5 × global",
    "test NFE ≤ 0.5 with test loss within 5 %",
    "test NFE ≤ 0.6 at test NLL within 0.05 nats",
    # the papers' MNIST ratios (papers.md) and the MNIST targets
    "| 177/253 = 0.70× |",
    "ERNODE, prediction time | 0.64× |",
    "ERNODE, training time | 0.84× |",
    "ERNODE, test accuracy | −0.62 points |",
    "| 188.0/303.6 = 0.62× |",
    "local unbiased, prediction time | 0.52× |",
    "local unbiased, test accuracy | −0.08 points |",
    "| 185/411 = 0.45× |",
    "within 0.5 % of the vanilla runs'",
    "at test accuracy within 0.5 point of vanilla: NFE ≤ 0.6, prediction ≤ 0.6, training ≤ 0.84",
    "at test accuracy within 0.5 point of vanilla: NFE ≤ 0.62",
    "at test accuracy within 0.5 point of vanilla: NFE ≤ 0.45",
    "Tsit5 spends 6 evaluations on a step",
    "the paper's 0.45× would need",
    "from 1-seed probes",
    "Paper 1's model",
    "moves in steps of 6",
)

_NUMBER = re.compile(r"(?<![\w.\-])[+\-]?\d+(?:\.\d+)?(?:e[+\-]?\d+)?(?!\w)")


def _normalize(text: str) -> str:
    return " ".join(text.replace("−", "-").split())


# --------------------------------------------------------------------------- #
# Values from the committed files
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class V:
    """A value and where it comes from. Format specs: the usual ones, "sci" (5e-3),
    "thou" (10 000)."""

    value: float | int | str
    source: str

    def __format__(self, spec: str) -> str:
        if spec == "sci":
            mantissa, exponent = f"{self.value:.0e}".split("e")
            return f"{mantissa}e{int(exponent)}"
        if spec == "thou":
            return f"{self.value:,}".replace(",", " ")
        if isinstance(self.value, str):  # a disagreement (`same`, `lowest_is`): shown as is
            return self.value
        return format(self.value, spec)

    def _with(self, other, op, symbol):
        if isinstance(other, V):
            return V(op(self.value, other.value), f"({self.source}) {symbol} ({other.source})")
        return V(op(self.value, other), f"({self.source}) {symbol} {other}")

    def __sub__(self, other):
        return self._with(other, lambda a, b: a - b, "-")

    def __rsub__(self, other):
        return V(other - self.value, f"{other} - ({self.source})")

    def __truediv__(self, other):
        return self._with(other, lambda a, b: a / b, "/")

    def __mul__(self, other):
        return self._with(other, lambda a, b: a * b, "*")


def lo(*values: V) -> V:
    return min(values, key=lambda v: v.value)


def hi(*values: V) -> V:
    return max(values, key=lambda v: v.value)


def largest_size(*values: V) -> V:
    """The value of largest absolute size, as that size ("within x" of zero)."""
    top = max(values, key=lambda v: abs(v.value))
    return V(abs(top.value), f"|{top.source}|")


def lowest_is(named: str, values: dict[str, V]) -> V:
    """`values[named]` if it is the lowest of `values` (else a value that no README text
    matches, naming the method that is lowest)."""
    lowest = min(values, key=lambda m: values[m].value)
    if lowest == named:
        return values[named]
    return V(f"<{lowest} is lowest, not {named}>", "disagree")


def same(*values: V) -> V:
    """The one value all of `values` have (else a value that no README text matches)."""
    if len({v.value for v in values}) == 1:
        return V(values[0].value, " = ".join(v.source for v in values))
    return V("<" + " ≠ ".join(f"{v.value} ({v.source})" for v in values) + ">", "disagree")


def _csv_rows(path: Path) -> list[dict[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return list(csv.DictReader(line for line in lines if not line.startswith("#")))


@functools.cache
def _comparison(table: str) -> dict[str, dict[str, str]]:
    return {row["method"]: row for row in _csv_rows(RESULTS / table / "comparison.csv")}


def col(table: str, method: str, column: str) -> V:
    value = float(_comparison(table)[method][column])
    return V(value, f"{table}/comparison.csv: {method} {column} = {value!r}")


def mean(table: str, method: str, quantity: str) -> V:
    return col(table, method, f"{quantity}_mean")


def ratio(table: str, method: str, quantity: str) -> V:
    return col(table, method, f"{quantity}_ratio_to_vanilla")


def acc(table: str, method: str) -> V:
    """Mean test accuracy (%)."""
    return mean(table, method, "test_accuracy") * 100


def nll_diff(table: str, method: str) -> V:
    return col(table, method, "test_nll_minus_vanilla")


def mib(table: str, method: str) -> V:
    return mean(table, method, "train_step_bytes") / MIB


def header(path: str, field: str) -> V:
    """A field of a table's Markdown header ("Date (UTC)", "Machine", ...)."""
    for line in (RESULTS / path).read_text(encoding="utf-8").splitlines():
        if line.startswith(f"{field}: "):
            return V(line.split(": ", 1)[1].rstrip(), f"{path} header {field}")
    raise AssertionError(f"{path} has no '{field}:' header line")


def date(*tables: str) -> V:
    return same(
        *(V(str(h.value)[:10], h.source) for t in tables for h in [header(_md(t), "Date (UTC)")])
    )


def _md(table: str) -> str:
    return "digits_pareto/pareto.md" if table == "digits_pareto" else f"{table}/comparison.md"


def cores(*tables: str) -> V:
    found = [header(_md(t), "Machine") for t in tables]
    return same(*(V(int(str(h.value).split(" CPU cores")[0]), h.source) for h in found))


def seeds(*tables: str) -> V:
    found = [header(_md(t), "Seeds") for t in tables]
    return same(*(V(len(str(h.value).split(";")[0].split(",")), h.source) for h in found))


def workers(*tables: str) -> V:
    found = [header(_md(t), "Command") for t in tables]
    return same(*(V(int(re.search(r"--workers (\d+)", str(h.value))[1]), h.source) for h in found))


def config(run_dir: str, key: str) -> V:
    """A value of a committed run directory's config.yaml (key dotted)."""
    value = yaml.safe_load((RESULTS / run_dir / "config.yaml").read_text(encoding="utf-8"))
    for part in key.split("."):
        value = value[part]
    return V(value, f"{run_dir}/config.yaml: {key} = {value!r}")


def summary_value(run_dir: str, key: str) -> V:
    """A value of a committed run directory's summary.json (key dotted)."""
    import json

    value = json.loads((RESULTS / run_dir / "summary.json").read_text(encoding="utf-8"))
    for part in key.split("."):
        value = value[part]
    return V(value, f"{run_dir}/summary.json: {key} = {value!r}")


def coefficient(run_dir: str, term: str) -> V:
    """A regularization term's coefficient; a local term without its own schedule uses
    the global term's (`regularization.local_error: null` -> `error`)."""
    schedule = config(run_dir, f"regularization.{term}").value
    if schedule is None and term.startswith("local_"):
        term = term.removeprefix("local_")
    return config(run_dir, f"regularization.{term}.start")


# --- the digits sweep (experiments/results/digits_pareto/sweep.csv) ---------- #

SWEEP = "digits_pareto/sweep.csv"
#: The grid column of each swept method (its coefficient).
GRID = {
    "error": "regularization.error.start",
    "stiffness": "regularization.stiffness.start",
    "error+stiffness": "regularization.error.start",
    TRAJ: "regularization.local_error.start",
    "steer": "regularization.steer_b",
    "taynode": "regularization.taynode.start",
    "rnode": "regularization.kinetic.start",
}


@dataclass(frozen=True)
class Setting:
    method: str
    value: str  # the grid column as sweep.csv writes it; "" for vanilla
    trials: tuple[dict[str, str], ...]

    def _spread(self, column: str, scale: float = 1.0) -> tuple[V, V]:
        values = [float(t[column]) * scale for t in self.trials]
        where = f"{SWEEP}: {self.method} {GRID.get(self.method, '')}={self.value}"
        where += f" seeds {[t['seed'] for t in self.trials]} {column}"
        return (
            V(statistics.fmean(values), f"mean of {where} {values}"),
            V(statistics.stdev(values), f"sd of {where} {values}"),
        )

    def nfe(self) -> tuple[V, V]:
        return self._spread("test_nfe")

    def acc(self) -> tuple[V, V]:
        return self._spread("test_metric", 100.0)

    def train(self) -> tuple[V, V]:
        return self._spread("train_seconds")

    def run_dir(self) -> str:
        path = Path(self.trials[0]["run_dir"])
        return str(path.relative_to("experiments/results"))


@functools.cache
def _sweep_rows() -> tuple[dict[str, str], ...]:
    return tuple(_csv_rows(RESULTS / SWEEP))


def settings(method: str) -> list[Setting]:
    grouped: dict[str, list[dict[str, str]]] = {}
    for row in _sweep_rows():
        if row["method"] == method:
            grouped.setdefault(row[GRID[method]] if method in GRID else "", []).append(row)
    assert grouped, f"{SWEEP} has no trial of {method}"
    return [Setting(method, value, tuple(rows)) for value, rows in grouped.items()]


def setting(method: str, value: str) -> Setting:
    return next(s for s in settings(method) if s.value == value)


def vanilla() -> Setting:
    (only,) = settings("vanilla")
    return only


def best(method: str) -> Setting:
    """The rule of the README (and of `nderegs sweep`): the lowest mean test NFE among
    the settings all of whose seeds succeeded and whose mean test accuracy is at least
    vanilla's − 1 point; ties go to the higher accuracy."""
    floor = vanilla().acc()[0].value - 1.0
    within = [
        s
        for s in settings(method)
        if s.acc()[0].value >= floor and all(t["status"] != "failed" for t in s.trials)
    ]
    return min(within, key=lambda s: (s.nfe()[0].value, -s.acc()[0].value))


def grid_value(s: Setting, kind=str) -> V:
    return V(kind(s.value), f"{SWEEP}: {s.method} setting {GRID[s.method]}={s.value}")


# --------------------------------------------------------------------------- #
# The claims, in README order: (text with format fields, value of each field)
# --------------------------------------------------------------------------- #


def _mnist_claims(claim) -> None:
    """The section on the papers' MNIST tables and their rows of "Against the targets"."""
    run1, sde_run = f"{M1}/vanilla/seed0", f"{MSDE}/vanilla/seed0"
    claim(
        "split once and for all into {} training and {} test images",
        summary_value(run1, "data_split.train"),
        summary_value(run1, "data_split.test"),
    )
    claim(
        "(SGD with momentum, batch {}) and ODE tolerance (rtol = atol = {:g}); their headers "
        "say where they depart from the papers and why: gradients clipped at norm {:g}, {} "
        "epochs ({} steps, where the papers train for thousands), the SDE at tolerance {:g}",
        same(*(config(f"{t}/vanilla/seed0", "optim.batch_size") for t in (M1, M2, MSDE))),
        same(
            *(
                config(f"{t}/vanilla/seed0", k)
                for t in (M1, M2)
                for k in ("solver.rtol", "solver.atol")
            )
        ),
        same(*(config(f"{t}/vanilla/seed0", "optim.grad_clip") for t in (M1, M2, MSDE))),
        same(*(config(f"{t}/vanilla/seed0", "optim.epochs") for t in (M1, M2, MSDE))),
        same(*(summary_value(f"{t}/vanilla/seed0", "steps") for t in (M1, M2, MSDE))),
        config(sde_run, "solver.rtol"),
    )
    claim(
        "Each table: {} seeds per method on {} CPU cores ({}).",
        seeds(M1, M1B, M2, MSDE),
        cores(M1, M1B, M2, MSDE),
        date(M1, M1B, M2, MSDE),
    )
    # the papers' ratios beside ours
    claim(
        "| paper 1, ERNODE (`error`), test NFE | 177/253 = 0.70× | {:.2f}× ({:.0f}/{:.0f}) |",
        ratio(M1, "error", "test_nfe"),
        mean(M1, "error", "test_nfe"),
        mean(M1, "vanilla", "test_nfe"),
    )
    claim(
        "| paper 1, ERNODE, prediction time | 0.64× | {:.2f}× |",
        ratio(M1, "error", "predict_seconds"),
    )
    claim(
        "| paper 1, ERNODE, training time | 0.84× | {:.2f}× |", ratio(M1, "error", "train_seconds")
    )
    claim(
        "| paper 1, ERNODE, test accuracy | −0.62 points | {:+.2f} points ({:.2f} vs {:.2f} %) |",
        acc(M1, "error") - acc(M1, "vanilla"),
        acc(M1, "error"),
        acc(M1, "vanilla"),
    )
    claim(
        "| paper 2, local unbiased (`local-error`), test NFE | 188.0/303.6 = 0.62× | {:.2f}× "
        "({:.0f}/{:.0f}) |",
        ratio(M2, "local-error", "test_nfe"),
        mean(M2, "local-error", "test_nfe"),
        mean(M2, "vanilla", "test_nfe"),
    )
    claim(
        "| paper 2, local unbiased, prediction time | 0.52× | {:.2f}× |",
        ratio(M2, "local-error", "predict_seconds"),
    )
    claim(
        "| paper 2, local unbiased, test accuracy | −0.08 points | {:+.2f} points ({:.2f} vs "
        "{:.2f} %) |",
        acc(M2, "local-error") - acc(M2, "vanilla"),
        acc(M2, "local-error"),
        acc(M2, "vanilla"),
    )
    claim(
        "| paper 1, MNIST SDE, ERNSDE (`error`), test NFE | 185/411 = 0.45× | {:.2f}× ({:.1f}/{:.1f}) |",
        ratio(MSDE, "error", "test_nfe"),
        mean(MSDE, "error", "test_nfe"),
        mean(MSDE, "vanilla", "test_nfe"),
    )
    # paper 1's table
    claim(
        "`error` does better than the paper's ERNODE on all four counts: NFE {:.2f}, prediction "
        "{:.2f}, training {:.2f}, at {:+.2f} points.",
        ratio(M1, "error", "test_nfe"),
        ratio(M1, "error", "predict_seconds"),
        ratio(M1, "error", "train_seconds"),
        acc(M1, "error") - acc(M1, "vanilla"),
    )
    claim(
        "`error+stiffness` (NFE {:.2f}, {:+.2f} points) and `steer+error` ({:.2f}, {:+.2f}) cut "
        "no further and lose more accuracy; `stiffness` ({:.2f}) and STEER ({:.2f}) alone leave "
        "the NFE at vanilla's.",
        ratio(M1, "error+stiffness", "test_nfe"),
        acc(M1, "error+stiffness") - acc(M1, "vanilla"),
        ratio(M1, "steer+error", "test_nfe"),
        acc(M1, "steer+error") - acc(M1, "vanilla"),
        ratio(M1, "stiffness", "test_nfe"),
        ratio(M1, "steer", "test_nfe"),
    )
    claim(
        "raises the NFE on this tanh-output field ({:.2f} unbiased, {:.2f} biased), as on the "
        "digits, and `local_gradient=trajectory` matches the global method (NFE {:.2f} at "
        "{:+.2f} points, training {:.2f}).",
        ratio(M1, "local-error", "test_nfe"),
        ratio(M1, "local-error-biased", "test_nfe"),
        ratio(M1, TRAJ, "test_nfe"),
        acc(M1, TRAJ) - acc(M1, "vanilla"),
        ratio(M1, TRAJ, "train_seconds"),
    )
    claim(
        "RNODE reaches the NFE of `error` ({:.2f}, {:+.2f} points) at {:.2f}× vanilla's training "
        "time, TayNODE {:.2f} at {:.2f}×.",
        ratio(M1, "rnode", "test_nfe"),
        acc(M1, "rnode") - acc(M1, "vanilla"),
        ratio(M1, "rnode", "train_seconds"),
        ratio(M1, "taynode", "test_nfe"),
        ratio(M1, "taynode", "train_seconds"),
    )
    claim(
        "does not beat the hand-picked λ here: `error` ends at {:.2f}× vanilla's NFE and {:+.2f} "
        "points (`local-error` with `local_gradient=trajectory`: {:.2f}×, {:+.2f}), its λ "
        "lowered from {:g} to {:.4f}",
        mean(M1B, "error", "test_nfe") / mean(M1, "vanilla", "test_nfe"),
        acc(M1B, "error") - acc(M1, "vanilla"),
        mean(M1B, TRAJ, "test_nfe") / mean(M1, "vanilla", "test_nfe"),
        acc(M1B, TRAJ) - acc(M1, "vanilla"),
        config(f"{M1B}/error/seed0", "regularization.error.initial"),
        same(
            *(summary_value(f"{M1B}/error/seed{i}", "coefficients.error.final") for i in range(3))
        ),
    )
    claim(
        "Tsit5 spends 6 evaluations on a step (and one more at the start), so a test batch's "
        "NFE moves in steps of 6: vanilla's {:.0f} are {:.0f} steps, `error`'s {:.0f} are "
        "{:.0f}, and the bound, {:.1f}, needs a step fewer.",
        mean(M1, "vanilla", "test_nfe"),
        (mean(M1, "vanilla", "test_nfe") - 1) / 6,
        mean(M1, "error", "test_nfe"),
        (mean(M1, "error", "test_nfe") - 1) / 6,
        mean(M1, "vanilla", "test_nfe") * 0.6,
    )
    # against the targets
    claim(
        "| `error`: NFE {:.2f}, prediction {:.2f}, training {:.2f}, accuracy {:+.2f} points; "
        "`error+stiffness`: NFE {:.2f}, prediction {:.2f}, at {:+.2f} points (outside the band) | "
        "NFE: no ({:.2f} over); prediction: no; training: yes |",
        ratio(M1, "error", "test_nfe"),
        ratio(M1, "error", "predict_seconds"),
        ratio(M1, "error", "train_seconds"),
        acc(M1, "error") - acc(M1, "vanilla"),
        ratio(M1, "error+stiffness", "test_nfe"),
        ratio(M1, "error+stiffness", "predict_seconds"),
        acc(M1, "error+stiffness") - acc(M1, "vanilla"),
        ratio(M1, "error", "test_nfe") - 0.6,
    )
    _mnist_later_claims(claim)


def _mnist_later_claims(claim) -> None:
    """Paper 2's and the SDE's MNIST tables."""
    step, backsolve = ("local-error", "local-error-biased"), f"local-error[{BACKSOLVE}]"
    claim(
        "both local samplings cut the test NFE to {:.2f}× ({:+.2f} and {:+.2f} points) and the "
        "prediction time to {:.2f}–{:.2f}×, at vanilla's training time ({:.2f}–{:.2f}×); with "
        "BacksolveAdjoint, the same NFE at {:.2f}× vanilla's training time (vanilla with "
        "recursive checkpointing) and {:.2f}× its train-step memory ({:.1f} vs {:.1f} MiB).",
        same(*(ratio(M2, m, "test_nfe") for m in (*step, backsolve))),
        acc(M2, "local-error") - acc(M2, "vanilla"),
        acc(M2, "local-error-biased") - acc(M2, "vanilla"),
        lo(*(ratio(M2, m, "predict_seconds") for m in step)),
        hi(*(ratio(M2, m, "predict_seconds") for m in step)),
        lo(*(ratio(M2, m, "train_seconds") for m in step)),
        hi(*(ratio(M2, m, "train_seconds") for m in step)),
        ratio(M2, backsolve, "train_seconds"),
        mib(M2, backsolve) / mib(M2, "vanilla"),
        mib(M2, backsolve),
        mib(M2, "vanilla"),
    )
    claim(
        "the global `error` ({:.2f}, {:+.2f} points) and `local_gradient=trajectory` ({:.2f}, "
        "{:+.2f}). RNODE reaches {:.2f} at {:+.2f} points, at {:.2f}× the training time.",
        ratio(M2, "error", "test_nfe"),
        acc(M2, "error") - acc(M2, "vanilla"),
        ratio(M2, TRAJ, "test_nfe"),
        acc(M2, TRAJ) - acc(M2, "vanilla"),
        ratio(M2, "rnode", "test_nfe"),
        acc(M2, "rnode") - acc(M2, "vanilla"),
        ratio(M2, "rnode", "train_seconds"),
    )
    claim(
        "`local-error` halves the test NFE ({:.2f}×) at {:+.2f} points, with prediction {:.2f}× "
        "and training {:.2f}×; `error` reaches the same NFE at {:+.2f} points, `error+stiffness` "
        "likewise ({:.2f}, {:+.2f}); `stiffness` alone leaves the NFE at vanilla's ({:.2f}). "
        "Every run of `error`, `error+stiffness` and `local-error` ends at {:.0f} test "
        "evaluations against vanilla's {:.0f}, in every seed;",
        same(*(ratio(MSDE, m, "test_nfe") for m in ("local-error", "error"))),
        acc(MSDE, "local-error") - acc(MSDE, "vanilla"),
        ratio(MSDE, "local-error", "predict_seconds"),
        ratio(MSDE, "local-error", "train_seconds"),
        acc(MSDE, "error") - acc(MSDE, "vanilla"),
        ratio(MSDE, "error+stiffness", "test_nfe"),
        acc(MSDE, "error+stiffness") - acc(MSDE, "vanilla"),
        ratio(MSDE, "stiffness", "test_nfe"),
        same(
            *(
                summary_value(f"{MSDE}/{m}/seed{i}", "test_nfe")
                for m in ("local-error", "error", "error_stiffness")
                for i in range(3)
            )
        ),
        same(*(summary_value(f"{MSDE}/vanilla/seed{i}", "test_nfe") for i in range(3))),
    )
    # against the targets
    claim(
        "| `local-error`: NFE {:.2f} at {:+.2f} points (`local-error-biased` {:.2f} at {:+.2f}; "
        "with BacksolveAdjoint {:.2f} at {:+.2f}) | no: {:.2f} over |",
        ratio(M2, "local-error", "test_nfe"),
        acc(M2, "local-error") - acc(M2, "vanilla"),
        ratio(M2, "local-error-biased", "test_nfe"),
        acc(M2, "local-error-biased") - acc(M2, "vanilla"),
        ratio(M2, f"local-error[{BACKSOLVE}]", "test_nfe"),
        acc(M2, f"local-error[{BACKSOLVE}]") - acc(M2, "vanilla"),
        ratio(M2, "local-error", "test_nfe") - 0.62,
    )
    claim(
        "| `local-error`: NFE {:.2f} at {:+.2f} points; `error`: {:.2f} at {:+.2f} points | no: "
        "{:.2f} over |",
        ratio(MSDE, "local-error", "test_nfe"),
        acc(MSDE, "local-error") - acc(MSDE, "vanilla"),
        ratio(MSDE, "error", "test_nfe"),
        acc(MSDE, "error") - acc(MSDE, "vanilla"),
        ratio(MSDE, "local-error", "test_nfe") - 0.45,
    )


def claims() -> list[tuple[str, tuple[V, ...]]]:
    out: list[tuple[str, tuple[V, ...]]] = []

    def claim(text: str, *values: V) -> None:
        out.append((text, values))

    # --- introduction
    claim("with the configs in `configs/` here and {} seeds", seeds(*TABLES, "digits_pareto"))
    claim("come from runs on a {}-core CPU machine", cores(*TABLES, "digits_pareto"))
    claim(
        "(`digits` and `digits_paper2`: {}; `digits_pareto`: {};",
        date(D, P2),
        date("digits_pareto"),
    )
    claim("`latent_ode`, `spiral_sde` and `digits_sde`: {};", date(LAT, SPI, SDE))
    claim("`cnf_2d`: moons {}, pinwheel {};", date(MOONS), date(PINWHEEL))

    # --- the digits sweep
    sweep = _sweep_rows()
    claim(
        "rtol = atol = {:sci}, every method over {} coefficients around the hand-picked one, "
        "{} seeds, {} runs with `--workers {}` on {} CPU cores ({}).",
        same(
            *(
                V(float(r[k]), f"{SWEEP}: {k}")
                for r in sweep
                for k in ("solver.rtol", "solver.atol")
            )
        ),
        same(*(V(len(settings(m)), f"{SWEEP}: settings of {m}") for m in GRID)),
        V(len({r["seed"] for r in sweep}), f"{SWEEP}: distinct seeds"),
        V(len(sweep), f"{SWEEP}: rows"),
        workers("digits_pareto"),
        cores("digits_pareto"),
        date("digits_pareto"),
    )
    claim("The two workers share the {} cores", cores("digits_pareto"))
    v_nfe, v_nfe_sd = vanilla().nfe()
    v_acc, _ = vanilla().acc()
    v_train, v_train_sd = vanilla().train()
    claim("vanilla's {:.2f} %; vanilla NFE {:.1f}):", v_acc, v_nfe)
    claim("| train time (s; vanilla {:.2f} ± {:.2f}) |", v_train, v_train_sd)
    rows = [
        ("error+stiffness", "error {} (stiffness {})", ("stiffness",)),
        (TRAJ, "{}", ()),
        ("error", "{}", ()),
        ("rnode", "kinetic {} (jacobian {})", ("jacobian",)),
        ("taynode", "{}", ()),
        ("stiffness", "{}", ()),
        ("steer", "b = {}", ()),
    ]
    for method, cell, others in rows:
        s = best(method)
        label = "`local-error`, `local_gradient=trajectory`" if method == TRAJ else f"`{method}`"
        nfe, nfe_sd = s.nfe()
        a, a_sd = s.acc()
        train, train_sd = s.train()
        claim(
            f"| {label} | {cell} | {{:.1f}} ± {{:.1f}} ({{:.2f}}) | {{:.2f}} ± {{:.2f}} | "
            "{:.2f} ± {:.2f} |",
            grid_value(s),
            *(coefficient(s.run_dir(), term) for term in others),
            nfe,
            nfe_sd,
            nfe / v_nfe,
            a,
            a_sd,
            train,
            train_sd,
        )
    heuristics = ("error+stiffness", TRAJ, "error", "rnode")
    claim(
        "`error+stiffness` {:.0f}, trajectory `local-error` {:.0f}, `error` and `rnode` {:.0f} "
        "(RNODE's sd over seeds is {:.1f},",
        best("error+stiffness").nfe()[0],
        best(TRAJ).nfe()[0],
        same(best("error").nfe()[0], best("rnode").nfe()[0]),
        best("rnode").nfe()[1],
    )
    trains = [best(m).train()[0] for m in heuristics]
    claim(
        "shortest training ({:.1f} s, {:.2f} × vanilla); `error` alone costs the most of the "
        "four ({:.1f} s). RNODE reaches it at the highest accuracy ({:.1f} %, above vanilla)",
        lo(*trains),
        lo(*trains) / v_train,
        hi(*trains),
        hi(*(best(m).acc()[0] for m in heuristics)),
    )
    heuristic_grids = ("error", "error+stiffness", TRAJ)
    top = same(*(hi(*(grid_value(s, float) for s in settings(m))) for m in heuristic_grids))
    at_top = [
        setting(m, s.value)
        for m in heuristic_grids
        for s in settings(m)
        if float(s.value) == top.value
    ]
    claim(
        "(error {:g}); at {:g} the NFE barely changes ({:.0f}–{:.0f}) and the accuracy falls to "
        "{:.2f}–{:.2f} %",
        # the best setting is the hand-picked coefficient of the other tables
        same(grid_value(best("error"), float), coefficient("digits/error/seed0", "error")),
        top,
        lo(*(s.nfe()[0] for s in at_top)),
        hi(*(s.nfe()[0] for s in at_top)),
        lo(*(s.acc()[0] for s in at_top)),
        hi(*(s.acc()[0] for s in at_top)),
    )
    claim(
        "tuned least in the earlier tables ({}): at {} RNODE drops from {:.2f} × to {:.2f} × "
        "and TayNODE from {:.2f} × to {:.2f} ×.",
        same(
            coefficient("digits/rnode/seed0", "kinetic"),
            coefficient("digits/taynode/seed0", "taynode"),
        ),
        same(grid_value(best("rnode")), grid_value(best("taynode"))),
        setting("rnode", str(coefficient("digits/rnode/seed0", "kinetic").value)).nfe()[0] / v_nfe,
        best("rnode").nfe()[0] / v_nfe,
        setting("taynode", str(coefficient("digits/taynode/seed0", "taynode").value)).nfe()[0]
        / v_nfe,
        best("taynode").nfe()[0] / v_nfe,
    )
    claim(
        "the most expensive to train ({:.1f} × vanilla)",
        hi(*(best(m).train()[0] for m in GRID)) / v_train,
    )
    claim(
        "(their lowest mean NFE: {:.1f} and {:.1f}, vanilla's {:.1f}).",
        lo(*(s.nfe()[0] for s in settings("stiffness"))),
        lo(*(s.nfe()[0] for s in settings("steer"))),
        v_nfe,
    )

    # --- continuous normalizing flows
    def both(run: str, key: str) -> V:
        return same(config(f"{MOONS}/{run}", key), config(f"{PINWHEEL}/{run}", key))

    claim(
        "({} hidden layers of {}, tanh), exact trace, Tsit5 at rtol = atol = {:sci}",
        both("vanilla/seed0", "task.model.depth"),
        both("vanilla/seed0", "task.model.width"),
        same(both("vanilla/seed0", "solver.rtol"), both("vanilla/seed0", "solver.atol")),
    )
    claim(
        "Adam {:sci}, {} epochs of {:thou} samples in batches of {}, test NLL on {:thou} fresh "
        "samples; every method, {} seeds, `--workers {}` on {} CPU cores (moons {}, pinwheel {}).",
        both("vanilla/seed0", "optim.lr"),
        both("vanilla/seed0", "optim.epochs"),
        both("vanilla/seed0", "task.data.num_train"),
        both("vanilla/seed0", "optim.batch_size"),
        both("vanilla/seed0", "task.data.num_test"),
        seeds(MOONS, PINWHEEL),
        workers(MOONS, PINWHEEL),
        cores(MOONS, PINWHEEL),
        date(MOONS),
        date(PINWHEEL),
    )
    density_seeds = [
        V(min(int(p.parent.name.removeprefix("seed")) for p in d.glob("seed*/density.npz")), str(d))
        for table in (MOONS, PINWHEEL)
        for d in (RESULTS / table).iterdir()
        if d.is_dir()
    ]
    claim("learned density (seed {}).", same(*density_seeds))
    claim(
        "rewrote pinwheel's at {} with",
        V(str(header(_md(PINWHEEL), "Date (UTC)").value)[11:16], _md(PINWHEEL)),
    )
    claim(
        "`error` {}, `local-error` {} (trajectory gradient), `stiffness` {}, STEER b = {}, "
        "RNODE kinetic {} / Jacobian {}, TayNODE {}.",
        same(
            coefficient(f"{MOONS}/error/seed0", "error"),
            coefficient(f"{PINWHEEL}/error/seed0", "error"),
        ),
        same(
            coefficient(f"{MOONS}/local-error/seed0", "local_error"),
            coefficient(f"{PINWHEEL}/local-error/seed0", "local_error"),
        ),
        same(
            coefficient(f"{MOONS}/stiffness/seed0", "stiffness"),
            coefficient(f"{PINWHEEL}/stiffness/seed0", "stiffness"),
        ),
        both("steer__regularization.steer_b-0.25/seed0", "regularization.steer_b"),
        *(
            same(*(coefficient(f"{t}/{_run_slug(RNODE)}/seed0", term) for t in (MOONS, PINWHEEL)))
            for term in ("kinetic", "jacobian")
        ),
        same(
            *(coefficient(f"{t}/{_run_slug(TAYNODE)}/seed0", "taynode") for t in (MOONS, PINWHEEL))
        ),
    )
    cnf_rows = [
        ("error", "error"),
        ("error+stiffness", "error+stiffness"),
        ("local-error", "local-error"),
        ("rnode", RNODE),
        ("taynode", TAYNODE),
        ("steer", STEER),
        ("stiffness", "stiffness"),
    ]
    for table in (MOONS, PINWHEEL):
        density = table.split("/")[1]
        # one claim for the density's rows: the first names the density, the others
        # leave that cell empty
        lines = [f"| {density} (vanilla: NLL {{:.3f}}, NFE {{:.1f}})"] + ["|"] * (len(cnf_rows) - 1)
        values = [mean(table, "vanilla", "test_nll"), mean(table, "vanilla", "test_nfe")]
        for index, (label, method) in enumerate(cnf_rows):
            lines[index] += f" | `{label}` | {{:.1f}} ({{:.2f}}) | {{:+.3f}} | {{:.2f}} |"
            values += [
                mean(table, method, "test_nfe"),
                ratio(table, method, "test_nfe"),
                nll_diff(table, method),
                ratio(table, method, "train_seconds"),
            ]
        claim(" ".join(lines), *values)
    cnf = (MOONS, PINWHEEL)
    all_methods = [m for _, m in cnf_rows] + ["vanilla"]
    claim(
        "at no cost in likelihood: {:.2f}–{:.2f} × vanilla's NFE within {:.2f} nats on both "
        "densities",
        lo(*(ratio(t, "error", "test_nfe") for t in cnf)),
        hi(*(ratio(t, "error", "test_nfe") for t in cnf)),
        largest_size(*(nll_diff(t, "error") for t in cnf)),
    )

    def train_ratios(table):
        return {m: ratio(table, m, "train_seconds") for m in all_methods}

    claim(
        "does): `error+stiffness` on moons ({:.2f} ×; `error` {:.2f} ×), `error+stiffness` on "
        "pinwheel ({:.2f} ×; `error` {:.2f} ×).",
        lowest_is("error+stiffness", train_ratios(MOONS)),
        ratio(MOONS, "error", "train_seconds"),
        lowest_is("error+stiffness", train_ratios(PINWHEEL)),
        ratio(PINWHEEL, "error", "train_seconds"),
    )
    claim(
        "gets about the same NFE ({:.2f}–{:.2f} ×) at {:.2f}–{:.2f} × vanilla's train time.",
        lo(*(ratio(t, "local-error", "test_nfe") for t in cnf)),
        hi(*(ratio(t, "local-error", "test_nfe") for t in cnf)),
        lo(*(ratio(t, "local-error", "train_seconds") for t in cnf)),
        hi(*(ratio(t, "local-error", "train_seconds") for t in cnf)),
    )
    claim(
        "reaches the lowest NFE on pinwheel ({:.1f} vs `error`'s {:.1f}) but at {:+.3f} nats, "
        "outside the 0.05 band; on moons it stays at {:.2f} ×.",
        lo(*(mean(PINWHEEL, m, "test_nfe") for m in all_methods)),
        mean(PINWHEEL, "error", "test_nfe"),
        nll_diff(PINWHEEL, RNODE),
        ratio(MOONS, RNODE, "test_nfe"),
    )
    claim(
        "`error`'s NFE on moons ({:.2f} ×) at a better NLL ({:+.3f}), but costs {:.2f} × "
        "vanilla's training, {:.0f} × `error`'s.",
        ratio(MOONS, TAYNODE, "test_nfe"),
        nll_diff(MOONS, TAYNODE),
        ratio(MOONS, TAYNODE, "train_seconds"),
        mean(MOONS, TAYNODE, "train_seconds") / mean(MOONS, "error", "train_seconds"),
    )
    claim(
        "({:.2f} × on moons, {:.2f} × on pinwheel)",
        ratio(MOONS, "stiffness", "test_nfe"),
        ratio(PINWHEEL, "stiffness", "test_nfe"),
    )
    claim(
        "two small 2-D densities; {} epochs, so these are short trainings (vanilla's test NLL "
        "on moons has a sd of {:.3f} over the seeds).",
        both("vanilla/seed0", "optim.epochs"),
        col(MOONS, "vanilla", "test_nll_sd"),
    )

    # --- the whole training cost
    claim(
        "On digits, `error` trains at {:.2f}× vanilla's forward and {:.2f}× its backward NFE, "
        "`error+stiffness` at {:.2f}× and {:.2f}×.",
        ratio(D, "error", "train_nfe"),
        ratio(D, "error", "train_backward_nfe"),
        ratio(D, "error+stiffness", "train_nfe"),
        ratio(D, "error+stiffness", "train_backward_nfe"),
    )
    claim(
        "`local-error` with `local_gradient=trajectory` {:.2f}× forward, {:.2f}× backward.",
        ratio(D, TRAJ, "train_nfe"),
        ratio(D, TRAJ, "train_backward_nfe"),
    )
    claim(
        "`error` {:.2f}× forward and {:.2f}× backward.",
        ratio(MOONS, "error", "train_nfe"),
        ratio(MOONS, "error", "train_backward_nfe"),
    )
    vanilla_bs, local_bs = f"vanilla[{BACKSOLVE}]", f"local-error[{BACKSOLVE}]"
    seminorm = f"{BACKSOLVE},solver.adjoint.seminorm=true"
    claim(
        "vanilla's takes {:.1f} evaluations (and as many VJPs) per training step against "
        "{:.1f} forward ones.",
        mean(P2, vanilla_bs, "train_backward_nfe"),
        mean(P2, vanilla_bs, "train_nfe"),
    )
    claim(
        "`local-error` takes {:.2f}× of vanilla's backward evaluations at {:.2f}× of its "
        "forward ones",
        mean(P2, local_bs, "train_backward_nfe") / mean(P2, vanilla_bs, "train_backward_nfe"),
        mean(P2, local_bs, "train_nfe") / mean(P2, vanilla_bs, "train_nfe"),
    )
    claim(
        "vanilla's backward solve takes {:.1f} evaluations with it and {:.1f} without, "
        "`local-error`'s {:.1f} and {:.1f}.",
        mean(P2, f"vanilla[{seminorm}]", "train_backward_nfe"),
        mean(P2, vanilla_bs, "train_backward_nfe"),
        mean(P2, f"local-error[{seminorm}]", "train_backward_nfe"),
        mean(P2, local_bs, "train_backward_nfe"),
    )

    # --- against the targets
    claim(
        "| `error+stiffness`: NFE {:.2f}, prediction {:.2f}, accuracy {:.2f} vs {:.2f} %, train "
        "{:.2f}; `error`: {:.2f} / {:.2f} / {:.2f} % / {:.2f} |",
        ratio(D, "error+stiffness", "test_nfe"),
        ratio(D, "error+stiffness", "predict_seconds"),
        acc(D, "error+stiffness"),
        acc(D, "vanilla"),
        ratio(D, "error+stiffness", "train_seconds"),
        ratio(D, "error", "test_nfe"),
        ratio(D, "error", "predict_seconds"),
        acc(D, "error"),
        ratio(D, "error", "train_seconds"),
    )
    claim(
        "| NFE {:.2f}, accuracy {:.2f} vs {:.2f} %, train {:.2f}, prediction {:.2f} | no: train "
        "time {:.2f} over the bound |",
        ratio(D, TRAJ, "test_nfe"),
        acc(D, TRAJ),
        acc(D, "vanilla"),
        ratio(D, TRAJ, "train_seconds"),
        ratio(D, TRAJ, "predict_seconds"),
        ratio(D, TRAJ, "train_seconds") - 0.8,
    )
    claim(
        "| {:.2f}, NFE {:.2f}; `local-error-biased` {:.2f}, NFE {:.2f} (see below) |",
        ratio(D, "local-error", "train_seconds"),
        ratio(D, "local-error", "test_nfe"),
        ratio(D, "local-error-biased", "train_seconds"),
        ratio(D, "local-error-biased", "test_nfe"),
    )
    claim(
        "| {:.2f} (RNODE {:.2f}) |",
        ratio(D, "taynode", "train_seconds"),
        ratio(D, "rnode", "train_seconds"),
    )
    claim(
        "| unbiased: NFE {:.2f}, accuracy {:.2f} vs {:.2f} %, train {:.2f}; biased: NFE {:.2f}, "
        "{:.2f} %, train {:.2f} | yes (both) |",
        ratio(P2, "local-error", "test_nfe"),
        acc(P2, "local-error"),
        acc(P2, "vanilla"),
        ratio(P2, "local-error", "train_seconds"),
        ratio(P2, "local-error-biased", "test_nfe"),
        acc(P2, "local-error-biased"),
        ratio(P2, "local-error-biased", "train_seconds"),
    )
    local_bs, biased_bs = f"local-error[{BACKSOLVE}]", f"local-error-biased[{BACKSOLVE}]"
    claim(
        "| local-error + backsolve {:.2f} MiB vs `error` (RecursiveCheckpoint) {:.2f} MiB: {:.2f}; "
        "at NFE {:.2f} (biased: {:.2f}), accuracy {:.2f} % |",
        mib(P2, local_bs),
        mib(P2, "error"),
        mib(P2, local_bs) / mib(P2, "error"),
        ratio(P2, local_bs, "test_nfe"),
        ratio(P2, biased_bs, "test_nfe"),
        acc(P2, local_bs),
    )
    claim(
        "| `error`: NFE {:.2f}, MSE {:+.1f} %; `local-error`: {:.2f}, {:+.1f} %; "
        "`local-error-biased`: {:.2f}, {:+.1f} % |",
        *(
            v
            for m in ("error", "local-error", "local-error-biased")
            for v in (ratio(LAT, m, "test_nfe"), (ratio(LAT, m, "test_mse") - 1) * 100)
        ),
    )
    claim(
        "| `error`: NFE {:.2f}, prediction {:.2f}, accuracy {:+.1f} points; `local-error`: {:.2f} / "
        "{:.2f} / {:+.1f} |",
        *(
            v
            for m in ("error", "local-error")
            for v in (
                ratio(SDE, m, "test_nfe"),
                ratio(SDE, m, "predict_seconds"),
                acc(SDE, m) - acc(SDE, "vanilla"),
            )
        ),
    )
    claim(
        "| `error`: NFE {:.2f}, prediction {:.2f}, train {:.2f}, MSE {:.3f} vs {:.3f} ({:+.0f} %); "
        "`local-error`: {:.2f} / {:.2f} / {:.2f}, MSE {:+.0f} %; `stiffness`: NFE {:.2f}, "
        "MSE {:+.0f} % |",
        ratio(SPI, "error", "test_nfe"),
        ratio(SPI, "error", "predict_seconds"),
        ratio(SPI, "error", "train_seconds"),
        mean(SPI, "error", "test_mse"),
        mean(SPI, "vanilla", "test_mse"),
        (ratio(SPI, "error", "test_mse") - 1) * 100,
        ratio(SPI, "local-error", "test_nfe"),
        ratio(SPI, "local-error", "predict_seconds"),
        ratio(SPI, "local-error", "train_seconds"),
        (ratio(SPI, "local-error", "test_mse") - 1) * 100,
        ratio(SPI, "stiffness", "test_nfe"),
        (ratio(SPI, "stiffness", "test_mse") - 1) * 100,
    )
    claim(
        "| moons: NFE {:.2f}, {:+.3f} nats, train {:.2f} (RNODE {:.2f}, TayNODE {:.2f}); "
        "pinwheel: {:.2f}, {:+.3f}, {:.2f} (RNODE {:.2f}, TayNODE {:.2f}). RNODE's NFE on "
        "pinwheel is lower ({:.2f}) but at {:+.3f} nats |",
        *(
            v
            for t in cnf
            for v in (
                ratio(t, "error", "test_nfe"),
                nll_diff(t, "error"),
                ratio(t, "error", "train_seconds"),
                ratio(t, RNODE, "train_seconds"),
                ratio(t, TAYNODE, "train_seconds"),
            )
        ),
        ratio(PINWHEEL, RNODE, "test_nfe"),
        nll_diff(PINWHEEL, RNODE),
    )

    # --- why the misses
    claim(
        "step, does that (NFE {:.2f}), the step estimator cannot ({:.2f}; `local-error-biased` "
        "{:.2f}),",
        ratio(D, "error", "test_nfe"),
        ratio(D, "local-error", "test_nfe"),
        ratio(D, "local-error-biased", "test_nfe"),
    )
    claim(
        "matches the global one (NFE {:.2f}, train {:.2f}) at one step's cost",
        ratio(D, TRAJ, "test_nfe"),
        ratio(D, TRAJ, "train_seconds"),
    )
    step = ("local-error", "local-error-biased")
    claim(
        "(NFE {:.2f} unbiased, {:.2f} biased, accuracy at least {:.1f} points above vanilla's, "
        "train {:.2f}–{:.2f}; with BacksolveAdjoint NFE {:.2f}–{:.2f} at {:.2f}× the train-step "
        "memory of the global method),",
        ratio(P2, "local-error", "test_nfe"),
        ratio(P2, "local-error-biased", "test_nfe"),
        lo(*(acc(P2, m) - acc(P2, "vanilla") for m in step)),
        lo(*(ratio(P2, m, "train_seconds") for m in step)),
        hi(*(ratio(P2, m, "train_seconds") for m in step)),
        lo(*(ratio(P2, m, "test_nfe") for m in (local_bs, biased_bs))),
        hi(*(ratio(P2, m, "test_nfe") for m in (local_bs, biased_bs))),
        mib(P2, local_bs) / mib(P2, "error"),
    )
    trajectory = (
        TRAJ,
        TRAJ_BIASED,
        f"local-error[regularization.local_gradient=trajectory,{BACKSOLVE}]",
    )
    claim(
        "method (NFE {:.2f}, accuracy {:.1f} points) and `local_gradient=trajectory` (NFE "
        "{:.2f}–{:.2f}, accuracy {:.0f} to {:.0f} points).",
        ratio(P2, "error", "test_nfe"),
        acc(P2, "error") - acc(P2, "vanilla"),
        lo(*(ratio(P2, m, "test_nfe") for m in trajectory)),
        hi(*(ratio(P2, m, "test_nfe") for m in trajectory)),
        hi(*(acc(P2, m) - acc(P2, "vanilla") for m in trajectory)),
        lo(*(acc(P2, m) - acc(P2, "vanilla") for m in trajectory)),
    )
    backsolve_runs = [m for m in _comparison(P2) if BACKSOLVE in m]
    claim(
        "than vanilla ({:.1f} vs {:.1f} MiB: the re-taken step's stages and the saved state); "
        "with BacksolveAdjoint the whole step takes {:.1f}–{:.1f} MiB,",
        mib(D, "local-error"),
        mib(D, "vanilla"),
        lo(*(mib(P2, m) for m in backsolve_runs)),
        hi(*(mib(P2, m) for m in backsolve_runs)),
    )
    claim(
        "With a PI controller (pcoeff {}, icoeff {}), a decaying learning rate and λ_E = {} the "
        "cut is consistent over seeds ({:.0f} ± {:.0f} vs {:.0f} ± {:.0f}).",
        same(*(config(f"{SPI}/{m}/seed0", "solver.pcoeff") for m in ("vanilla", "error"))),
        same(*(config(f"{SPI}/{m}/seed0", "solver.icoeff") for m in ("vanilla", "error"))),
        coefficient(f"{SPI}/error/seed0", "error"),
        mean(SPI, "error", "test_nfe"),
        col(SPI, "error", "test_nfe_sd"),
        mean(SPI, "vanilla", "test_nfe"),
        col(SPI, "vanilla", "test_nfe_sd"),
    )
    _mnist_claims(claim)
    return out


def _run_slug(method: str) -> str:
    """The run directory of a method entry with overrides (as `nderegs compare` names it)."""
    name, _, overrides = method.partition("[")
    if not overrides:
        return name
    return name + "".join(f"__{o.replace('=', '-')}" for o in overrides.rstrip("]").split(","))


# --------------------------------------------------------------------------- #
# Matching
# --------------------------------------------------------------------------- #


def _fields(text: str) -> list[tuple[str, str | None]]:
    """(literal, format spec or None) pieces of a claim's text."""
    pieces = []
    for literal, field, spec, _ in string.Formatter().parse(text):
        pieces.append((literal, None))
        if field is not None:
            assert field == "", f"use positional fields in {text!r}"
            pieces.append(("", spec or ""))
    return pieces


def _render(text: str, values: tuple[V, ...]) -> tuple[str, list[tuple[int, int]]]:
    """The claim as the README must say it, and the spans of its fields in it."""
    out, spans, next_value = "", [], iter(values)
    for literal, spec in _fields(text):
        if spec is None:
            out += _normalize(f"x{literal}x")[1:-1]
        else:
            shown = _normalize(format(next(next_value), spec))
            spans.append((len(out), len(out) + len(shown)))
            out += shown
    assert next(next_value, None) is None, f"more values than fields in {text!r}"
    return out, spans


def _pattern(text: str) -> re.Pattern[str]:
    """Matches the claim's text with any numbers in its fields."""
    regex = ""
    for literal, spec in _fields(text):
        if spec is None:
            regex += re.escape(_normalize(f"x{literal}x")[1:-1])
        else:
            regex += r"(\d+(?: \d{3})*)" if spec == "thou" else r"(\S+?)"
    return re.compile(regex)


def _check(readme: str, text: str, values: tuple[V, ...]) -> tuple[str | None, list]:
    """(None, the spans of its fields) when the README says the claim; else (a message,
    the spans of the fields of the README's sentence like it, if any: those numbers are
    reported here, not as unchecked)."""
    expected, spans = _render(text, values)
    at = readme.find(expected)
    if at >= 0:
        return None, [(at + a, at + b) for a, b in spans]
    found = _pattern(text).search(readme)
    if found is None:
        return (
            f"the README has no sentence like {expected!r} any more: reword the claim in "
            f"{Path(__file__).name} or remove its numbers; its first values: "
            + "; ".join(v.source for v in values[:3])
        ), []
    lines = [f"README says:   {found[0]!r}", f"results give:  {expected!r}"]
    for index, (printed, value) in enumerate(zip(found.groups(), values)):
        spec = [s for _, s in _fields(text) if s is not None][index]
        shown = _normalize(format(value, spec))
        if printed != shown:
            lines.append(f"  {printed} ≠ {shown}: {value.source} (value {value.value!r})")
    return "\n".join(lines), [found.span(g) for g in range(1, len(values) + 1)]


@functools.cache
def _readme() -> str:
    return _normalize(README.read_text(encoding="utf-8"))


def test_readme_numbers_are_the_committed_results():
    readme = _readme()
    problems = [
        message for text, values in claims() if (message := _check(readme, text, values)[0])
    ]
    assert not problems, (
        "experiments/README.md disagrees with the committed results:\n\n" + "\n\n".join(problems)
    )


def test_every_number_of_the_readme_is_checked():
    readme = _readme()
    covered = []
    for text, values in claims():
        covered += _check(readme, text, values)[1]
    stale = [fragment for fragment in NOT_RESULTS if _normalize(fragment) not in readme]
    assert not stale, f"NOT_RESULTS fragments no longer in the README: {stale}"
    for fragment in NOT_RESULTS:
        fragment = _normalize(fragment)
        covered += [(m.start(), m.end()) for m in re.finditer(re.escape(fragment), readme)]
    unchecked = [
        f"{m[0]!r} in ...{readme[max(0, m.start() - 60) : m.end() + 30]}..."
        for m in _NUMBER.finditer(readme)
        if not any(a <= m.start() < b for a, b in covered)
    ]
    assert not unchecked, (
        "numbers of experiments/README.md that no claim of this test checks (add a claim, or "
        "a NOT_RESULTS fragment if it is not a result, or remove the number):\n"
        + "\n".join(unchecked)
    )


@pytest.mark.parametrize(
    ("value", "spec", "shown"),
    [
        (0.005, "sci", "5e-3"),
        (1e-08, "sci", "1e-8"),
        (10000, "thou", "10 000"),
        (-5.5556, ".1f", "-5.6"),
    ],
)
def test_formats(value, spec, shown):
    assert format(V(value, "made up"), spec) == shown


def test_a_wrong_number_is_reported_with_its_sentence_and_source():
    readme = "the error method: NFE 0.58 × vanilla's, at +0.005 nats."
    text = "the error method: NFE {:.2f} × vanilla's, at {:+.3f} nats."
    values = (V(0.5657, "cnf_2d/moons/comparison.csv: error ratio"), V(0.0049, "diff"))
    message, covered = _check(readme, text, values)
    assert [readme[a:b] for a, b in covered] == ["0.58", "+0.005"]
    assert 'README says:   "the error method: NFE 0.58 × vanilla\'s, at +0.005 nats."' in message
    assert "0.58 ≠ 0.57: cnf_2d/moons/comparison.csv: error ratio (value 0.5657)" in message
    assert "+0.005 ≠" not in message
    message, covered = _check(readme, "no such sentence {:.2f}.", values[:1])
    assert "no sentence like 'no such sentence 0.57.'" in message
