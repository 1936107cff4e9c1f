"""`nderegs compare`: running methods x seeds, the comparison table, plots and the CLI.

One tiny real comparison (vanilla, error; 2 seeds) is shared by the tests that read
its files; the others replace `train` with a fake to test the bookkeeping quickly.
"""

import csv
from datetime import datetime, timedelta, UTC
import json
import math
from pathlib import Path
import re
import statistics
from typing import ClassVar

import matplotlib.image
import pytest
from tiny import TINY

from nderegs.cli import main
from nderegs.config import ConfigError
from nderegs.report import (
    ComparisonResult,
    markdown_table,
    method_rows,
    over_training_figure,
    parse_entry,
    read_comparison,
    ReportHeader,
    run_comparison,
    RunResult,
    split_entries,
    spread,
    write_report,
)
from nderegs.report.plots import (
    coefficients_over_training_figure,
    method_styles,
    metric_vs_prediction_time_figure,
    nfe_over_training_figure,
    plot_nfe_over_training,
)
from nderegs.report.runs import run_dir_for
from nderegs.report.table import coefficients_table, format_spread
from nderegs.runners.run import FAILED, READ, RESUMED, SKIPPED, TRAINED
from nderegs.tasks import AbstractTask, Metric, metric_named

# The tests share one expensive module fixture: keep them on one xdist worker.
pytestmark = pytest.mark.xdist_group("compare")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _summary(method, seed, **values):
    """A summary.json-like dict with made-up numbers."""
    summary = {
        "method": method,
        "seed": seed,
        "metric": "accuracy",
        "train_metric": 0.9,
        "test_metric": 0.8,
        "test_nfe": 20.0,
        "train_nfe": 20.0,
        "train_backward_nfe": 40.0,
        "train_seconds": 10.0,
        "predict_seconds": 0.01,
    }
    return {**summary, **values}


def _ok(method, seed, **values):
    summary = _summary(method, seed, **values)
    return RunResult(method, seed, run_dir_for("out", method, seed), TRAINED, summary)


def _failed(method, seed, error="boom"):
    return RunResult(method, seed, run_dir_for("out", method, seed), FAILED, error=error)


def _result(runs):
    methods = tuple(dict.fromkeys(r.method for r in runs))
    seeds = tuple(sorted({r.seed for r in runs}))
    return ComparisonResult(methods=methods, seeds=seeds, output_dir="out", runs=tuple(runs))


def _row_line(markdown, method):
    """The table line of one method."""
    return next(line for line in markdown.splitlines() if line.startswith(f"| `{method}` |"))


def _saved_summary(output_dir, method, seed):
    return json.loads((run_dir_for(output_dir, method, seed) / "summary.json").read_text())


def _read_csv(path):
    lines = path.read_text().splitlines()
    comments = [line for line in lines if line.startswith("#")]
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    return comments, rows


class FakeTrain:
    """Stands in for `train`: records calls, fails for chosen methods, else writes and
    returns a made-up summary."""

    def __init__(self, fail_methods=()):
        self.calls = []
        self.fail_methods = set(fail_methods)

    def __call__(self, config, *, run_dir, resume=False):
        self.calls.append((config.method, config.seed, resume))
        if config.method in self.fail_methods:
            raise NotImplementedError(f"{config.method} is not implemented yet")
        summary = _summary(config.method, config.seed, test_metric=0.5 + 0.1 * config.seed)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "summary.json").write_text(json.dumps(summary))
        return summary


@pytest.fixture
def fake_train(monkeypatch):
    fake = FakeTrain(fail_methods={"error"})
    monkeypatch.setattr("nderegs.runners.run.train", fake)
    return fake


# --------------------------------------------------------------------------- #
# Table arithmetic on synthetic summaries (no training)
# --------------------------------------------------------------------------- #


def test_spread_is_mean_and_sample_sd_of_finite_values():
    s = spread([1.0, 2.0, None, 4.0, float("nan")])
    assert s.n == 3
    assert s.mean == pytest.approx(7 / 3)
    assert s.sd == pytest.approx(statistics.stdev([1.0, 2.0, 4.0]))  # ddof=1
    single = spread([5.0])
    assert (single.mean, single.sd, single.n) == (5.0, None, 1)
    assert spread([None]) is None and spread([]) is None


def test_rows_average_successful_seeds_and_divide_by_vanilla():
    result = _result(
        [
            _ok("vanilla", 0, train_seconds=10, test_nfe=20, predict_seconds=0.02, test_metric=0.8),
            _ok("vanilla", 1, train_seconds=14, test_nfe=30, predict_seconds=0.04, test_metric=0.9),
            _ok("error", 0, train_seconds=30, test_nfe=10, predict_seconds=0.01, test_metric=0.68),
            _failed("error", 1, "diverged"),
        ]
    )
    vanilla, error = method_rows(result)
    assert (vanilla.runs, vanilla.failed, error.runs, error.failed) == (2, 0, 2, 1)
    assert vanilla.stats["train_seconds"].mean == pytest.approx(12.0)
    assert vanilla.stats["train_seconds"].sd == pytest.approx(math.sqrt(8.0))
    assert error.stats["train_seconds"].sd is None  # one successful seed
    # The made-up summaries have no train_step_bytes: that ratio is undefined.
    assert vanilla.ratios.pop("train_step_bytes") is None
    assert vanilla.ratios == pytest.approx(
        {
            "train_seconds": 1.0,
            "predict_seconds": 1.0,
            "test_nfe": 1.0,
            "train_nfe": 1.0,
            "train_backward_nfe": 1.0,
            "test_metric": 1.0,
        }
    )
    assert error.ratios["train_seconds"] == pytest.approx(30.0 / 12.0)
    assert error.ratios["test_nfe"] == pytest.approx(10.0 / 25.0)
    assert error.ratios["predict_seconds"] == pytest.approx(0.01 / 0.03)
    assert error.ratios["test_metric"] == pytest.approx(0.68 / 0.85)
    assert error.first_error == "error seed 1: diverged"


#: Made-up values of two seeds per method. Every method's mean is a different known
#: fraction of vanilla's (error: train 0.75, prediction 0.40, NFE 0.45, training
#: forward NFE 0.50, backward 0.60, metric 0.80, memory 1.25; steer: 1.50, 1.10, 1.30,
#: 1.20, 1.40, 0.90, 1.75), and vanilla is not the first
#: method: a ratio that is always 1, inverted, or divided by another method's mean
#: shows in the cells.
RATIO_SEEDS = {
    "error": [
        dict(train_seconds=8.0, predict_seconds=0.010, test_nfe=20.0, test_metric=0.66),
        dict(train_seconds=10.0, predict_seconds=0.014, test_nfe=25.0, test_metric=0.70),
    ],
    "vanilla": [
        dict(train_seconds=10.0, predict_seconds=0.020, test_nfe=40.0, test_metric=0.80),
        dict(train_seconds=14.0, predict_seconds=0.040, test_nfe=60.0, test_metric=0.90),
    ],
    "steer": [
        dict(train_seconds=17.0, predict_seconds=0.030, test_nfe=60.0, test_metric=0.75),
        dict(train_seconds=19.0, predict_seconds=0.036, test_nfe=70.0, test_metric=0.78),
    ],
}
#: Training forward and backward NFE of the two seeds (vanilla means 40 and 80).
TRAINING_NFE = {
    "error": [(18.0, 44.0), (22.0, 52.0)],
    "vanilla": [(30.0, 60.0), (50.0, 100.0)],
    "steer": [(46.0, 110.0), (50.0, 114.0)],
}
for _method, _seeds in RATIO_SEEDS.items():
    for _seed, (_forward, _backward) in zip(_seeds, TRAINING_NFE[_method]):
        _seed.update(train_nfe=_forward, train_backward_nfe=_backward)
RATIO_MIB = {"error": 5, "vanilla": 4, "steer": 7}  # train-step memory (MiB, every seed)
#: How the table labels each ratio column (Markdown) and names it (CSV, accuracy).
RATIO_COLUMNS = {
    "train_seconds": ("Train time ×", "train_seconds_ratio_to_vanilla"),
    "predict_seconds": ("Prediction time ×", "predict_seconds_ratio_to_vanilla"),
    "test_nfe": ("NFE ×", "test_nfe_ratio_to_vanilla"),
    "train_nfe": ("Forward NFE ×", "train_nfe_ratio_to_vanilla"),
    "train_backward_nfe": ("Backward NFE ×", "train_backward_nfe_ratio_to_vanilla"),
    "test_metric": ("Test acc. ×", "test_accuracy_ratio_to_vanilla"),
    "train_step_bytes": ("Memory ×", "train_step_bytes_ratio_to_vanilla"),
}


def _ratio_result(metric):
    runs = [
        _ok(method, seed, metric=metric, train_step_bytes=RATIO_MIB[method] * 2**20, **values)
        for method, seeds in RATIO_SEEDS.items()
        for seed, values in enumerate(seeds)
    ]
    return _result(runs)


def _hand_ratios(method, metric):
    """Each ratio column's value, from RATIO_SEEDS by hand: mean / vanilla's mean (for
    "nll", the test metric's mean − vanilla's)."""

    def mean(m, q):
        return statistics.fmean(seed[q] for seed in RATIO_SEEDS[m])

    quantities = (
        "train_seconds",
        "predict_seconds",
        "test_nfe",
        "train_nfe",
        "train_backward_nfe",
        "test_metric",
    )
    ratios = {q: mean(method, q) / mean("vanilla", q) for q in quantities}
    ratios["train_step_bytes"] = RATIO_MIB[method] / RATIO_MIB["vanilla"]
    if metric == "nll":
        ratios["test_metric"] = mean(method, "test_metric") - mean("vanilla", "test_metric")
    return ratios


def _cells(markdown, method):
    """Header label -> cell of one method's table line."""
    header = [c.strip() for c in markdown.splitlines()[0].strip("|").split("|")]
    cells = [c.strip() for c in _row_line(markdown, method).strip("|").split("|")]
    assert len(cells) == len(header)
    return dict(zip(header, cells))


@pytest.mark.parametrize("metric", ["accuracy", "nll"])
def test_ratio_cells_of_markdown_and_csv_are_the_hand_computed_ratios(tmp_path, metric):
    from nderegs.report.table import write_csv

    result = _ratio_result(metric)
    rows = {row.method: row for row in method_rows(result)}
    markdown = markdown_table(list(rows.values()), result.metric)
    write_csv(tmp_path / "comparison.csv", ["made up"], list(rows.values()), result.metric)
    _, csv_rows = _read_csv(tmp_path / "comparison.csv")
    by_method = {r["method"]: r for r in csv_rows}
    assert list(by_method) == ["error", "vanilla", "steer"]
    labels = dict(RATIO_COLUMNS)
    if metric == "nll":
        labels["test_metric"] = ("Test NLL − vanilla", "test_nll_minus_vanilla")
    for method in RATIO_SEEDS:
        expected = _hand_ratios(method, metric)
        assert rows[method].ratios == pytest.approx(expected), method
        cells = _cells(markdown, method)
        for q, (label, column) in labels.items():
            shown = f"{expected[q]:+.3f}" if label.endswith("− vanilla") else f"{expected[q]:.2f}"
            assert cells[label] == shown, (method, label, cells[label], expected[q])
            assert float(by_method[method][column]) == pytest.approx(expected[q]), (method, column)
        # the means the ratios come from are in the CSV at full precision
        for q in ("train_seconds", "predict_seconds", "test_nfe"):
            mean = statistics.fmean(seed[q] for seed in RATIO_SEEDS[method])
            assert float(by_method[method][f"{q}_mean"]) == pytest.approx(mean), (method, q)
    # the hand-computed values are what the seeds were chosen to give
    assert _hand_ratios("error", "accuracy") == pytest.approx(
        dict(
            train_seconds=0.75,
            predict_seconds=0.40,
            test_nfe=0.45,
            train_nfe=0.50,
            train_backward_nfe=0.60,
            test_metric=0.80,
            train_step_bytes=1.25,
        )
    )
    assert _hand_ratios("steer", "accuracy") == pytest.approx(
        dict(
            train_seconds=1.50,
            predict_seconds=1.10,
            test_nfe=1.30,
            train_nfe=1.20,
            train_backward_nfe=1.40,
            test_metric=0.90,
            train_step_bytes=1.75,
        )
    )


def test_markdown_shows_percent_na_for_one_seed_and_failures_in_footnotes():
    result = _result(
        [
            _ok("vanilla", 0, test_metric=0.5),
            _ok("vanilla", 1, test_metric=0.7),
            _ok("error", 0, test_metric=0.9),
            _failed("error", 1, "NotImplementedError: not | yet"),
            _failed("steer", 0, "first"),
            _failed("steer", 1, "second"),
        ]
    )
    table = markdown_table(method_rows(result), result.metric)
    lines = table.splitlines()
    assert lines[0].startswith("| Method | Train acc. (%) | Test acc. (%) |")
    vanilla, error, steer = (_row_line(table, m) for m in ("vanilla", "error", "steer"))
    assert "60.00 ± 14.14" in vanilla and "| 1.00 | 1.00 | 1.00 | 1.00 |" in vanilla
    assert "90.00 ± n/a" in error and "1/2 failed [^1]" in error
    assert "2/2 failed [^2]" in steer and "—" in steer
    assert "shown as `n/a`" in table
    assert "[^1]: first failure: error seed 1: NotImplementedError: not \\| yet" in table
    assert "[^2]: first failure: steer seed 0: first" in table


def test_no_ratio_columns_without_vanilla_and_mse_is_not_scaled():
    runs = [_ok("error", s, metric="mse", test_metric=v) for s, v in [(0, 0.0123), (1, 0.0125)]]
    result = _result(runs)
    rows = method_rows(result)
    assert rows[0].ratios == {}
    table = markdown_table(rows, result.metric)
    assert "×" not in table.splitlines()[0] and "Test MSE" in table
    mse = result.metric
    assert format_spread(spread([0.0123, 0.0125]), "test_metric", mse) == "0.01240 ± 0.00014"
    assert format_spread(spread([12.34, 12.36]), "train_seconds") == "12.3 ± 0.0"


def test_drop_empty_leaves_out_the_columns_without_a_value_and_their_notes():
    runs = [_ok(m, s, test_metric=0.5 + 0.1 * s) for m in ("vanilla", "error") for s in (0, 1)]
    result = _result(runs)
    rows = method_rows(result)  # the made-up summaries record no train_step_bytes
    full, dropped = markdown_table(rows, result.metric), markdown_table(rows, result.metric, True)
    assert "| — |" in _row_line(full, "error") and "Train-step memory:" in full
    header = dropped.splitlines()[0]
    assert "Train-step memory (MiB)" not in header and "Memory ×" not in header
    assert "—" not in _row_line(dropped, "error") and "Train-step memory:" not in dropped
    # the other columns and notes are those of the full table
    kept = {k: v for k, v in _cells(full, "error").items() if "emory" not in k}
    assert _cells(dropped, "error") == kept
    notes = [line for line in full.splitlines() if line.startswith("- ")]
    notes[1] = notes[1].split(" Train-step memory:")[0]
    assert [line for line in dropped.splitlines() if line.startswith("- ")] == notes
    # a table with a value in every column is the same either way
    complete = _ratio_result("accuracy")
    rows = method_rows(complete)
    assert markdown_table(rows, complete.metric, True) == markdown_table(rows, complete.metric)


class _ScoreTask(AbstractTask):
    """A task whose metric no shipped task has: higher is better, shown × 10 in "pts"
    with 1 decimal, compared with vanilla's by difference. Declaring it is all a new
    task does for the report: `metric_named` finds it from the class."""

    metric: ClassVar[Metric] = Metric(
        name="toy_score",
        label="Score",
        higher_is_better=True,
        unit="pts",
        scale=10.0,
        decimals=1,
        by_difference=True,
    )


def test_a_tasks_metric_object_drives_the_table_plot_and_csv(tmp_path):
    from nderegs.report.plots import metric_axis
    from nderegs.report.table import write_csv

    values = {"vanilla": (0.5, 0.7), "error": (0.9, 0.7)}
    runs = [
        _ok(m, seed, metric="toy_score", test_metric=v)
        for m, seeds in values.items()
        for seed, v in enumerate(seeds)
    ]
    result = _result(runs)
    assert result.metric is _ScoreTask.metric
    rows = method_rows(result)
    table = markdown_table(rows, result.metric, drop_empty=True)
    error = _cells(table, "error")
    # mean 0.8 (sd 0.14) shown × 10 with 1 decimal; train 0.9 in every run
    assert error["Test Score (pts)"] == "8.0 ± 1.4" and error["Train Score (pts)"] == "9.0 ± 0.0"
    # (0.8 − 0.6) × 10, signed: a difference, not a ratio
    assert error["Test Score − vanilla"] == "+2.000" and "Test Score ×" not in table
    note = "- Test Score − vanilla: the method's mean minus vanilla's (pts; positive is better)."
    assert note in table.splitlines()
    write_csv(tmp_path / "comparison.csv", ["made up"], rows, result.metric)
    by_method = {r["method"]: r for r in _read_csv(tmp_path / "comparison.csv")[1]}
    assert float(by_method["error"]["test_toy_score_mean"]) == pytest.approx(0.8)
    assert float(by_method["error"]["test_toy_score_minus_vanilla"]) == pytest.approx(0.2)
    assert metric_axis(result.metric) == (10.0, "test toy_score (pts)")


def test_a_comparison_without_a_successful_run_has_a_generic_metric():
    result = _result([_failed("vanilla", 0), _failed("error", 0)])
    assert result.metric == Metric.generic("metric") == metric_named(None)
    assert metric_named("unknown_loss").label == "unknown_loss"
    table = markdown_table(method_rows(result), result.metric)
    assert table.startswith("| Method | Train metric | Test metric | Train time (s) |")


# --------------------------------------------------------------------------- #
# Plots of many methods (synthetic runs, no training)
# --------------------------------------------------------------------------- #

TWELVE = [
    "vanilla",
    "error",
    "stiffness",
    "local-error",
    "local-error-biased",
    "local-stiffness",
    "steer",
    "taynode",
    "rnode",
    "error+stiffness",
    "error[regularization.error.start=0.3]",
    "local-error[regularization.local_gradient=trajectory,solver.adjoint=backsolve]",
]


def test_method_styles_give_twelve_methods_distinct_colours_and_markers():
    styles = method_styles(TWELVE)
    assert list(styles) == TWELVE
    pairs = [(s["color"], s["marker"]) for s in styles.values()]
    assert len(set(pairs)) == 12
    assert len({color for color, _ in pairs}) == 12  # not even a colour twice
    # Stable: the same list gives the same styles (in every plot, in every call).
    assert method_styles(list(TWELVE)) == styles
    # Far beyond twelve: no two of 100 methods share both colour and marker.
    many = method_styles([f"m{i}" for i in range(100)]).values()
    assert len({(s["color"], s["marker"]) for s in many}) == 100


def _no_overlap(a, b) -> bool:
    return a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0


def _assert_legend_outside(figure):
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    (axes,) = figure.axes
    legend = axes.get_legend()
    assert legend is not None
    assert _no_overlap(legend.get_window_extent(renderer), axes.get_window_extent(renderer))
    return legend


def test_plots_of_twelve_methods_style_each_and_keep_the_legend_outside(tmp_path):
    runs = []
    for index, method in enumerate(TWELVE):
        for seed in (0, 1):
            run = _ok(
                method,
                seed,
                test_metric=0.8 + 0.01 * index,
                predict_seconds=0.01 * (index + 1),
                coefficients={"error": {"by_epoch": [1.0, 0.5 + index, 0.25]}},
            )
            run_dir = tmp_path / f"m{index}" / f"seed{seed}"
            run_dir.mkdir(parents=True)
            rows = [{"epoch": e, "test_nfe": 10.0 + index + e + seed} for e in (1, 2, 3)]
            (run_dir / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)))
            runs.append(RunResult(method, seed, run_dir, TRAINED, run.summary))
    result = _result([*runs, _failed("error[a.b=1]", 0)])
    styles = method_styles(result.methods)

    figure = nfe_over_training_figure(result)
    (axes,) = figure.axes
    drawn = {line.get_label(): line for line in axes.lines if line.get_xdata().size}
    assert len(drawn) == 12
    for method in TWELVE:
        line = next(line for label, line in drawn.items() if label.startswith(f"{method} ("))
        assert (line.get_color(), line.get_marker()) == tuple(styles[method].values())
    legend = _assert_legend_outside(figure)
    assert len(legend.get_texts()) == 13  # 12 methods and the one without a successful run
    assert "no successful run: error[a.b=1]" in legend.get_texts()[-1].get_text()

    figure = metric_vs_prediction_time_figure(result)
    points = figure.axes[0].collections
    assert len(points) == 12
    assert len({tuple(p.get_facecolor()[0]) for p in points}) == 12
    _assert_legend_outside(figure)

    figure = coefficients_over_training_figure(result)
    assert figure is not None and len(figure.axes[0].lines) == 12
    _assert_legend_outside(figure)

    # The file holds the legend too: wider than the 7.5-inch figure without one.
    path = plot_nfe_over_training(result, tmp_path / "nfe.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert matplotlib.image.imread(path).shape[1] > 7.5 * figure.dpi + 150


# --------------------------------------------------------------------------- #
# A tiny real comparison
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="session")  # session: set up once even when xdist interleaves
def real(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("compare")
    result = run_comparison(None, ["vanilla", "error"], 2, TINY, output_dir, progress=False)
    files = write_report(result, output_dir, command="nderegs compare --methods vanilla,error")
    return result, files


def test_real_runs_write_their_directories_and_summaries(real):
    result, _ = real
    assert [(r.method, r.seed, r.status) for r in result.runs] == [
        ("vanilla", 0, TRAINED),
        ("vanilla", 1, TRAINED),
        ("error", 0, TRAINED),
        ("error", 1, TRAINED),
    ]
    for run in result.runs:
        assert run.run_dir == result.output_dir / run.method / f"seed{run.seed}"
        assert json.loads((run.run_dir / "summary.json").read_text()) == run.summary


def test_table_files_have_header_and_one_row_per_method(real):
    _, files = real
    markdown = files["markdown"].read_text()
    assert markdown.startswith("# Method comparison\n")
    command = "Command: `nderegs compare --methods vanilla,error`"
    for field in (command, "Machine: ", "CPU cores", "backend cpu", "Date (UTC): "):
        assert field in markdown
    assert sum(line.startswith("| `") for line in markdown.splitlines()) == 2
    comments, rows = _read_csv(files["csv"])
    assert comments[0] == "# Command: nderegs compare --methods vanilla,error"
    assert any(c.startswith("# Machine: ") for c in comments)
    assert any(c.startswith("# Date (UTC): ") for c in comments)
    assert [row["method"] for row in rows] == ["vanilla", "error"]


def test_csv_and_markdown_agree_with_hand_computation_from_summaries(real):
    result, files = real
    _, rows = _read_csv(files["csv"])
    summaries = {
        method: [_saved_summary(result.output_dir, method, seed) for seed in (0, 1)]
        for method in ("vanilla", "error")
    }
    columns = [
        ("test_metric", "test_accuracy"),
        ("train_seconds", "train_seconds"),
        ("test_nfe", "test_nfe"),
    ]
    for row in rows:
        for field, column in columns:
            values = [s[field] for s in summaries[row["method"]]]
            assert float(row[f"{column}_mean"]) == pytest.approx(statistics.fmean(values))
            assert float(row[f"{column}_sd"]) == pytest.approx(statistics.stdev(values), abs=1e-12)
    vanilla_row, error_row = rows
    for column in ("train_seconds", "predict_seconds", "test_nfe", "test_accuracy"):
        assert float(vanilla_row[f"{column}_ratio_to_vanilla"]) == 1.0
    predict = {m: statistics.fmean(s["predict_seconds"] for s in summaries[m]) for m in summaries}
    ratio = float(error_row["predict_seconds_ratio_to_vanilla"])
    assert ratio == pytest.approx(predict["error"] / predict["vanilla"])
    accuracies = [100 * s["test_metric"] for s in summaries["vanilla"]]
    expected = f"{statistics.fmean(accuracies):.2f} ± {statistics.stdev(accuracies):.2f}"
    vanilla_line = _row_line(files["markdown"].read_text(), "vanilla")
    assert f"| {expected} |" in vanilla_line and "| 1.00 | 1.00 | 1.00 | 1.00 |" in vanilla_line


def test_plots_are_non_empty_pngs(real):
    _, files = real
    for key in ("nfe_plot", "metric_plot"):
        data = files[key].read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000


def test_read_comparison_gives_back_the_comparison_write_report_wrote(real):
    result, files = real
    before = datetime.now(UTC)
    again = read_comparison(result.output_dir)
    assert (again.methods, again.seeds, again.output_dir) == (
        result.methods,
        result.seeds,
        result.output_dir,
    )
    assert [(r.method, r.seed, r.run_dir) for r in again.runs] == [
        (r.method, r.seed, r.run_dir) for r in result.runs
    ]
    assert [r.summary for r in again.runs] == [r.summary for r in result.runs]
    assert {r.status for r in again.runs} == {READ}  # read back, not asked to run
    header = again.header
    assert header is not None and result.header is None
    assert header.command == "nderegs compare --methods vanilla,error"
    assert (header.seeds, header.runs_in) == (result.seeds, result.output_dir)
    assert "CPU cores" in header.machine and header.date.tzinfo is not None
    assert before - timedelta(hours=1) < header.date <= before
    # the same header lines and table as the files
    markdown = files["markdown"].read_text()
    assert "  \n".join(header.lines()) in markdown
    assert markdown.endswith(markdown_table(method_rows(again), again.metric))
    comments = [line[2:] for line in files["csv"].read_text().splitlines() if line[:2] == "# "]
    assert comments[:4] == header.lines(markdown=False) == str(header).splitlines()


def test_read_comparison_makes_a_committed_comparison_md_again():
    """experiments/results/digits: the table of its comparison.md, byte for byte; the
    digits SDE's, written before the memory columns, without the columns it lacks."""
    results = Path(__file__).resolve().parents[1] / "experiments" / "results"
    for table, drop_empty in (("digits", False), ("digits_sde", True)):
        result = read_comparison(results / table)
        markdown = (results / table / "comparison.md").read_text(encoding="utf-8")
        tables = markdown_table(method_rows(result), result.metric, drop_empty)
        tables += "\n" + coefficients_table(result) if coefficients_table(result) else ""
        assert markdown == "# Method comparison\n\n" + "  \n".join(result.header.lines()) + (
            "\n\n" + tables
        )
        assert result.header.seeds == result.seeds == (0, 1, 2)
        assert result.header.runs_in == Path("experiments/results") / table
        assert result.header.command.startswith(f"nderegs compare experiments/configs/{table}.yaml")
        assert len(result.runs) == 3 * len(result.methods)
        assert all(r.status == READ and r.run_dir.is_dir() for r in result.runs)


def test_read_comparison_of_failed_runs_keeps_their_table(tmp_path, fake_train):
    result = run_comparison(None, ["error", "vanilla"], 2, TINY, tmp_path, progress=False)
    files = write_report(result, tmp_path, command="test")
    again = read_comparison(tmp_path)
    assert [r.status for r in again.runs] == [FAILED, FAILED, READ, READ]
    first, second = again.runs_of("error")
    assert first.error == "NotImplementedError: error is not implemented yet"  # the table's
    assert second.error == f"no summary.json in {run_dir_for(tmp_path, 'error', 1)}"
    table = markdown_table(method_rows(again), again.metric)
    assert files["markdown"].read_text().endswith(table) and "2/2 failed [^1]" in table


def test_read_comparison_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no comparison.csv"):
        read_comparison(tmp_path)
    (tmp_path / "comparison.csv").write_text("# Command: x\n# Machine: y\nmethod,runs\n")
    with pytest.raises(ValueError, match="comparison.csv has no Date \\(UTC\\), Seeds line"):
        read_comparison(tmp_path)


def test_report_header_lines_parse_back():
    header = ReportHeader(
        command="nderegs compare c.yaml --methods 'a,b[x=1]'",
        machine="2 CPU cores; JAX 0.10, backend cpu",
        date=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        seeds=(0, 4, 7),
        runs_in=Path("runs/some; dir"),
    )
    assert header.lines() == [
        "Command: `nderegs compare c.yaml --methods 'a,b[x=1]'`",
        "Machine: 2 CPU cores; JAX 0.10, backend cpu",
        "Date (UTC): 2026-01-02T03:04:05+00:00",
        "Seeds: 0, 4, 7; runs in runs/some; dir",
    ]
    assert ReportHeader.parse(header.lines()) == header
    assert ReportHeader.parse(["other: line", *header.lines(markdown=False)]) == header
    with pytest.raises(ValueError, match="cannot read its header"):
        ReportHeader.parse([*header.lines()[:3], "Seeds: zero; runs in x"])


def test_over_training_figure_draws_a_panel_per_column_a_line_per_method(real):
    result, _ = real
    figure = over_training_figure(
        result, ["test_nfe", ("test_accuracy", "test accuracy")], ["error"], "title"
    )
    nfe, accuracy = figure.axes
    assert (nfe.get_ylabel(), accuracy.get_ylabel()) == ("test_nfe", "test accuracy")
    assert [line.get_label() for line in accuracy.lines] == ["error (2 runs)"]
    # the error method keeps its colour of the whole comparison
    assert accuracy.lines[0].get_color() == method_styles(result.methods)["error"]["color"]
    assert figure.get_suptitle() == "title"
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    legend = accuracy.get_legend()  # beside the last panel, over neither
    assert legend is not None and nfe.get_legend() is None
    for axes in (nfe, accuracy):
        assert _no_overlap(legend.get_window_extent(renderer), axes.get_window_extent(renderer))


def test_second_invocation_reads_finished_runs_back_without_training(real, monkeypatch):
    result, _ = real
    fake = FakeTrain()
    monkeypatch.setattr("nderegs.runners.run.train", fake)
    again = run_comparison(None, ["vanilla", "error"], 2, TINY, result.output_dir, progress=False)
    assert fake.calls == []
    assert [r.status for r in again.runs] == [SKIPPED] * 4
    assert [r.summary for r in again.runs] == [r.summary for r in result.runs]


def test_finished_run_with_another_configuration_is_not_reused(real, monkeypatch, capsys):
    """A clash is a configuration error before anything runs: the folder's table and
    plots are left as they were."""
    result, _ = real
    fake = FakeTrain()
    monkeypatch.setattr("nderegs.runners.run.train", fake)
    overrides = [*TINY, "optim.epochs=2"]
    with pytest.raises(ConfigError, match=r"(?s)other settings, so nothing was run.*optim.epochs"):
        run_comparison(None, ["vanilla"], 1, overrides, result.output_dir, progress=False)
    write_report(result, result.output_dir, command="first")
    before = {p.name: p.read_bytes() for p in result.output_dir.iterdir() if p.is_file()}
    argv = ["compare", "--methods", "vanilla", "--seeds", "1"]
    assert main([*argv, "--output-dir", str(result.output_dir), *overrides]) == 2
    assert "optim.epochs" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in result.output_dir.iterdir() if p.is_file()}
    assert fake.calls == [] and after == before


# --------------------------------------------------------------------------- #
# Bookkeeping with a fake `train`
# --------------------------------------------------------------------------- #


def test_run_with_checkpoint_but_no_summary_is_resumed(tmp_path, fake_train):
    (run_dir_for(tmp_path, "vanilla", 1)).mkdir(parents=True)
    (run_dir_for(tmp_path, "vanilla", 1) / "checkpoint.eqx").write_bytes(b"")
    result = run_comparison(None, ["vanilla"], 2, TINY, tmp_path, progress=False)
    assert fake_train.calls == [("vanilla", 0, False), ("vanilla", 1, True)]
    assert [r.status for r in result.runs] == [TRAINED, RESUMED]


def test_failing_method_is_reported_and_the_others_run(tmp_path, fake_train, capsys):
    result = run_comparison(None, ["error", "vanilla"], 2, TINY, tmp_path, progress=True)
    called = [(m, s) for m, s, _ in fake_train.calls]
    assert called == [("error", 0), ("error", 1), ("vanilla", 0), ("vanilla", 1)]
    assert [r.status for r in result.runs] == [FAILED, FAILED, TRAINED, TRAINED]
    out, err = capsys.readouterr()
    assert "[1/4] error seed 0: FAILED: NotImplementedError: error is not implemented yet" in err
    assert "[4/4] vanilla seed 1: test accuracy 0.6000, NFE 20.0, train 10.0 s" in err
    assert "[" not in out  # progress is stderr's: stdout holds only what a command prints
    files = write_report(result, tmp_path, command="test")
    markdown = files["markdown"].read_text()
    assert "2/2 failed [^1]" in markdown
    footnote = "[^1]: first failure: error seed 0: NotImplementedError: error is not implemented"
    assert footnote in markdown
    assert files["metric_plot"].read_bytes().startswith(PNG_SIGNATURE)


def test_cli_runs_seed_list_prints_table_and_exits_1_on_failures(tmp_path, fake_train, capsys):
    argv = [
        "compare",
        "--methods",
        "vanilla,error",
        "--seed-list",
        "0,4,7",
        "--output-dir",
        str(tmp_path),
        *TINY,
    ]
    assert main(argv) == 1
    assert sorted(p.name for p in (tmp_path / "vanilla").iterdir()) == ["seed0", "seed4", "seed7"]
    captured = capsys.readouterr()
    table = f"Table: {tmp_path / 'comparison.md'} and {tmp_path / 'comparison.csv'}"
    assert table in captured.err  # where the files are: stderr; the table itself: stdout
    assert "| `vanilla` |" in captured.out and "3/3 failed" in captured.out
    assert "[1/6]" in captured.err and "[1/6]" not in captured.out  # progress: stderr
    assert f"Command: `nderegs {' '.join(argv)}`" in (tmp_path / "comparison.md").read_text()


def test_cli_default_output_dir_is_compare_name_under_config_output_dir(tmp_path, monkeypatch):
    monkeypatch.setattr("nderegs.runners.run.train", FakeTrain())
    argv = ["compare", "--methods", "vanilla", "--seeds", "1", f"output_dir={tmp_path}", "name=a"]
    assert main(argv) == 0
    assert (tmp_path / "compare-a" / "comparison.md").exists()
    assert (tmp_path / "compare-a" / "vanilla" / "seed0").is_dir()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "vanilla,bogus"], "valid components: vanilla, error"),
        (["--methods", "vanilla,vanilla"], "more than once"),
        (["--methods", "vanilla", "--seeds", "0"], "number of seeds"),
        (["--methods", "vanilla", "optim.epoch=3"], "did you mean 'epochs'"),
    ],
)
def test_cli_rejects_bad_input_with_exit_code_2_before_training(
    tmp_path, monkeypatch, capsys, args, message
):
    fake = FakeTrain()
    monkeypatch.setattr("nderegs.runners.run.train", fake)
    assert main(["compare", "--output-dir", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err
    assert fake.calls == [] and not any(tmp_path.iterdir())


def test_api_validates_methods_up_front(tmp_path, fake_train):
    with pytest.raises(ConfigError, match="unknown component 'nope'"):
        run_comparison(None, ["vanilla", "nope"], 1, output_dir=tmp_path, progress=False)
    assert fake_train.calls == []


def test_entries_whose_runs_would_share_a_directory_are_rejected(tmp_path, fake_train):
    # '/' is '-' in a directory name: both rows would be vanilla__name-a-b/seed0.
    entries = ["vanilla[name=a/b]", "vanilla[name=a-b]"]
    shared = tmp_path / "vanilla__name-a-b" / "seed0"
    with pytest.raises(ConfigError, match=f"two runs would share the run directory {shared}"):
        run_comparison(None, entries, 1, TINY, tmp_path, progress=False)
    assert fake_train.calls == [] and not any(tmp_path.iterdir())


def test_progress_lines_name_a_method_entrys_own_overrides(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("nderegs.runners.run.train", FakeTrain())
    entry = "local-error[solver.adjoint=backsolve]"
    run_comparison(None, ["local-error", entry], 1, TINY, tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "[1/2] local-error seed 0: test accuracy" in err
    assert f"[2/2] {entry} seed 0: test accuracy" in err


def test_method_entries_carry_their_own_overrides(tmp_path, monkeypatch):
    """`METHOD[key=value,...]` is a row of its own: same method, its overrides applied."""
    assert split_entries("vanilla, error[a.b=1,c=2] ,local-error") == [
        "vanilla",
        "error[a.b=1,c=2]",
        "local-error",
    ]
    assert parse_entry("local-error [ solver.adjoint=backsolve ]") == (
        "local-error",
        ("solver.adjoint=backsolve",),
    )
    configs = []
    fake = FakeTrain()
    monkeypatch.setattr(
        "nderegs.runners.run.train",
        lambda config, **kw: configs.append(config) or fake(config, **kw),
    )
    entry = "local-error[regularization.local_gradient=trajectory,solver.adjoint=backsolve]"
    result = run_comparison(None, ["local-error", entry], 1, TINY, tmp_path, progress=False)
    assert result.methods == ("local-error", entry)
    plain, own = configs
    assert (plain.regularization.local_gradient, plain.solver.adjoint.name) == (
        "step",
        "recursive_checkpoint",
    )
    assert (own.method, own.regularization.local_gradient, own.solver.adjoint.name) == (
        "local-error",
        "trajectory",
        "backsolve",
    )
    # Each row holds its own runs (one per seed), labelled with its entry.
    assert [r.method for r in result.runs] == ["local-error", entry]
    assert [len(result.runs_of(m)) for m in result.methods] == [1, 1]
    slug = "local-error__regularization.local_gradient-trajectory__solver.adjoint-backsolve"
    assert (tmp_path / slug / "seed0" / "summary.json").exists()
    markdown = write_report(result, tmp_path, command="test")["markdown"].read_text()
    assert f"| `{entry}` |" in markdown


@pytest.mark.parametrize(
    "entry, message",
    [
        ("error[solver.rtol]", "key=value overrides"),
        ("error[]", "key=value overrides"),
        ("error[a=1", "malformed method entry"),
        ("bogus[a=1]", "unknown component 'bogus'"),
        ("error[method=stiffness]", "cannot be set per row"),
        ("error[seed=3]", "cannot be set per row"),
    ],
)
def test_malformed_method_entries_are_rejected(entry, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_entry(entry)


def test_unwritable_output_dir_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("nderegs.runners.run.train", FakeTrain())

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "comparison.md"))

    monkeypatch.setattr("nderegs.report.write_report", refuse)
    argv = ["compare", "--methods", "vanilla", "--seeds", "1", "--output-dir", str(tmp_path)]
    assert main([*argv, *TINY]) == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and "Permission denied" in err and "--output-dir" in err
