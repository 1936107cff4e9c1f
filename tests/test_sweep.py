"""Sweeps (`nderegs sweep`): trials on Ray and on local processes, resumability,
failures, the Pareto fronts and best settings, and TensorBoard and W&B tracking."""

import csv
import json
import os
from pathlib import Path
import struct
import sys
from typing import ClassVar

import pytest
from tiny import TINY

from nderegs.cli import main
from nderegs.config import ConfigError, load_config
from nderegs.report import report_header, run_sweep, write_sweep
from nderegs.report.plots import method_styles
from nderegs.report.sweep import (
    best_setting,
    Grid,
    pareto_figure,
    pareto_front,
    pareto_markdown,
    SettingStats,
    SweepResult,
    Trial,
)
from nderegs.report.table import Spread
from nderegs.runners import BACKENDS, InProcess, make_backend, ProcessPool, RayBackend
from nderegs.runners.run import FAILED, RunResult, SKIPPED, TRAINED
from nderegs.tasks import AbstractTask, Metric, metric_named
from nderegs.train import train

pytestmark = pytest.mark.xdist_group("sweep")

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "digits.yaml"
# Two trials: a grid per method, each applied to its own method only.
# (Grids of several values: test_failing_trial_is_recorded_and_the_rest_complete.)
SWEEP = dict(
    methods=["error", "local-error"],
    grids=[
        "error:regularization.error.start=0.1",
        "local-error:regularization.local_error.start=1",
    ],
    seeds=1,
    overrides=[*TINY, "train.predict_repeats=1"],
)
DETERMINISTIC = ("method", "regularization.error.start", "seed", "status", "test_metric")


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def ray_sweep(tmp_path_factory):
    output = tmp_path_factory.mktemp("ray") / "sweep"
    # A local instance of 1 CPU, no dashboard: one Ray worker runs both trials (a second
    # would cost the suite another start of JAX, and the 2-core machine has no spare core).
    backend = RayBackend(workers=1)
    try:
        result = run_sweep(CONFIG, output_dir=output, backend=backend, progress=False, **SWEEP)
        again = run_sweep(CONFIG, output_dir=output, backend=backend, progress=False, **SWEEP)
    finally:
        backend.close()
    files = write_sweep(result, output, report_header(result, "test"))
    return result, again, files


def test_ray_sweep_runs_every_trial_in_a_ray_worker(ray_sweep):
    result, _, files = ray_sweep
    assert [t.result.status for t in result.trials] == [TRAINED] * 2
    for trial in result.trials:
        worker = trial.result.summary["worker"]
        assert worker["pid"] != os.getpid() and worker["node"]
        # The driver wrote the run's files from the task's return value.
        run_dir = trial.result.run_dir
        assert json.loads((run_dir / "summary.json").read_text())["worker"] == worker
        assert (run_dir / "metrics.jsonl").read_text().strip()
        assert (run_dir / "config.yaml").exists() and (run_dir / "checkpoint.eqx").exists()
    assert {p.name for p in files.values()} == {
        "sweep.csv",
        "pareto.md",
        "pareto.png",
        "tuned.md",
    }
    rows = _rows(files["csv"])
    assert [
        (r["method"], r["regularization.error.start"], r["regularization.local_error.start"])
        for r in rows
    ] == [("error", "0.1", ""), ("local-error", "", "1")]
    assert files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pareto = files["pareto"].read_text()
    assert "### `local-error`" in pareto and "regularization.local_error.start=1" in pareto


def test_ray_sweep_reinvoked_runs_nothing(ray_sweep):
    result, again, _ = ray_sweep
    assert [t.result.status for t in again.trials] == [SKIPPED] * 2
    assert [t.result.summary for t in again.trials] == [t.result.summary for t in result.trials]


def test_local_pool_gives_the_same_values(ray_sweep, tmp_path):
    result, _, files = ray_sweep
    # A pool of one spawned process for the two trials: the second waits for the first
    # (more trials than workers). (`--workers 1` itself runs in this process.)
    backend = ProcessPool(1)
    local = run_sweep(CONFIG, output_dir=tmp_path, backend=backend, progress=False, **SWEEP)
    local_files = write_sweep(local, tmp_path, report_header(local, "test"))
    columns = (*DETERMINISTIC, "test_nfe", "train_metric", "regularization.local_error.start")
    expected = [{c: r[c] for c in columns} for r in _rows(files["csv"])]
    assert [{c: r[c] for c in columns} for r in _rows(local_files["csv"])] == expected
    pids = {t.result.summary["worker"]["pid"] for t in local.trials}
    assert len(pids) == 1 and os.getpid() not in pids  # one spawned pool process


def test_failing_trial_is_recorded_and_the_rest_complete(tmp_path):
    result = run_sweep(
        CONFIG,
        methods=["vanilla"],
        grids=["solver.max_steps=1,4096"],
        seeds=1,
        overrides=[*TINY, "train.predict_repeats=1"],
        output_dir=tmp_path,
        progress=False,
    )
    statuses = [t.result.status for t in result.trials]
    assert statuses == [FAILED, TRAINED]
    assert "max_steps" in (result.trials[0].result.error or "")
    files = write_sweep(result, tmp_path, report_header(result, "test"))
    rows = _rows(files["csv"])
    assert rows[0]["status"] == "failed" and "max_steps" in rows[0]["error"]
    assert rows[1]["status"] == "trained" and float(rows[1]["test_nfe"]) > 0
    assert "## Failed trials" in files["pareto"].read_text()


def test_missing_ray_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'nderegs\[ray\]'"):
        RayBackend()
    code = main(["sweep", str(CONFIG), "--methods", "vanilla", "--backend", "ray", "--seeds", "1"])
    assert code == 2
    assert "pip install 'nderegs[ray]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, problem",
    [
        ("regularization.error.start", "malformed grid"),
        ("regularization.error.start=", "malformed grid"),
        ("seed=1,2", "not a grid key"),
        ("a.b=1,1", "more than once"),
    ],
)
def test_bad_grids_are_rejected(text, problem):
    with pytest.raises(ConfigError, match=problem):
        Grid.parse(text)


def test_grid_for_a_method_not_swept_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="not in --methods"):
        run_sweep(CONFIG, ["vanilla"], ["error:regularization.error.start=1"], 1, TINY, tmp_path)
    with pytest.raises(ConfigError, match="unknown key"):
        run_sweep(CONFIG, ["vanilla"], ["solver.nope=1,2"], 1, TINY, tmp_path)
    assert not any(tmp_path.iterdir())


def _fake_train(config, *, run_dir, resume=False):
    """Stands in for `train`: a made-up summary, written and returned at once."""
    start = config.regularization.error.start if config.method == "error" else 0.0
    summary = {
        "method": config.method,
        "seed": config.seed,
        "metric": "accuracy",
        "train_metric": 0.9,
        "test_metric": 0.8,
        "test_nfe": 20.0 - start,
        "train_seconds": 1.0,
        "predict_seconds": 0.01,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return summary


def test_progress_lines_name_each_trials_grid_values(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("nderegs.runners.run.train", _fake_train)
    entry = "local-error[solver.adjoint=backsolve]"
    result = run_sweep(
        CONFIG,
        methods=["vanilla", "error", entry],
        grids=["error:regularization.error.start=0.3,1", "solver.max_steps=512,4096"],
        seeds=[0, 2],
        overrides=TINY,
        output_dir=tmp_path,
    )
    assert [t.result.status for t in result.trials] == [TRAINED] * 16
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[")]
    names = [line.split("] ", 1)[1].split(": ", 1)[0] for line in lines]
    assert names == [
        *(f"vanilla solver.max_steps={n} seed {s}" for n in (512, 4096) for s in (0, 2)),
        *(
            f"error regularization.error.start={v} solver.max_steps={n} seed {s}"
            for v in ("0.3", "1")
            for n in (512, 4096)
            for s in (0, 2)
        ),
        *(f"{entry} solver.max_steps={n} seed {s}" for n in (512, 4096) for s in (0, 2)),
    ]
    assert lines[4].startswith("[5/16] error regularization.error.start=0.3 solver.max_steps=512")
    # The rows stay labelled by their method entries (the tuned comparison's rows).
    assert {t.result.method for t in result.trials} == {"vanilla", "error", entry}


def test_pareto_plot_of_twelve_methods_styles_each_and_keeps_the_legend_outside(tmp_path):
    methods = [f"m{i}" for i in range(11)] + ["vanilla"]
    trials = []
    for index, method in enumerate(methods):
        for value in ("1", "3"):
            summary = {"metric": "accuracy", "test_metric": 0.8, "test_nfe": index + float(value)}
            run = RunResult(method, 0, tmp_path / method / value, TRAINED, summary)
            trials.append(Trial(method, (("k", value),), 0, run))
    result = SweepResult(tuple(methods), ("k",), (0,), tmp_path, tuple(trials))
    figure = pareto_figure(result)
    axes = figure.axes[0]
    points = [container.lines[0] for container in axes.containers]
    styles = method_styles(methods)
    assert [(p.get_color(), p.get_marker()) for p in points] == [
        (styles[m]["color"], "*" if m == "vanilla" else styles[m]["marker"]) for m in methods
    ]
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    legend = axes.get_legend().get_window_extent(renderer)
    box = axes.get_window_extent(renderer)
    assert legend.x0 >= box.x1 or legend.y1 <= box.y0 or legend.y0 >= box.y1


def _stats(method, nfe, metric, setting=("k", "v")) -> SettingStats:
    return SettingStats(
        method,
        (setting,),
        1,
        0,
        Spread(nfe, None, 1),
        Spread(metric, None, 1),
        Spread(1.0, None, 1),
    )


def test_pareto_front_against_brute_force():
    import itertools
    import random

    rng = random.Random(0)
    for _ in range(50):
        points = [
            _stats("m", rng.choice([10, 20, 30, 40]), rng.choice([0.8, 0.9, 0.95]), ("k", str(i)))
            for i in range(6)
        ]
        front = pareto_front(points, metric_named("accuracy"))
        for p in points:
            better = any(
                q.test_nfe.mean <= p.test_nfe.mean
                and q.test_metric.mean >= p.test_metric.mean
                and (q.test_nfe.mean, q.test_metric.mean) != (p.test_nfe.mean, p.test_metric.mean)
                for q in points
            )
            assert (p in front) == (not better)
        assert all(a.test_nfe.mean <= b.test_nfe.mean for a, b in itertools.pairwise(front))
    # Lower is better for a loss metric.
    loss = [
        _stats("m", 10, 0.5, ("k", "a")),
        _stats("m", 20, 0.1, ("k", "b")),
        _stats("m", 30, 0.2, ("k", "c")),
    ]
    assert [s.setting[0][1] for s in pareto_front(loss, metric_named("mse"))] == ["a", "b"]


def test_best_setting_is_the_cheapest_within_one_point():
    stats = [
        _stats("error", 30, 0.960, ("c", "0.1")),
        _stats("error", 20, 0.952, ("c", "1")),
        _stats("error", 10, 0.900, ("c", "10")),
    ]
    accuracy = metric_named("accuracy")
    best, matched = best_setting(stats, "error", 0.96, accuracy)
    assert matched and best is not None and best.setting == (("c", "1"),)
    best, matched = best_setting(stats, "error", 0.99, accuracy)
    assert not matched and best is not None and best.setting == (("c", "0.1"),)


@pytest.mark.parametrize(
    "name, baseline, matched, unmatched",
    [
        ("accuracy", 0.96, [0.96, 0.951, 0.99], [0.949, 0.5]),  # at least 1 point below
        ("mse", 0.1, [0.1, 0.101, 0.05], [0.102, 0.2]),  # at most 1.01 × vanilla's
        ("nll", 2.46, [2.46, 2.5, 1.0], [2.52, 3.0]),  # at most 0.05 nats above
        ("nll", -1.0, [-1.0, -0.96, -2.0], [-0.94, 0.0]),  # a negative one too
    ],
)
def test_a_metric_matches_vanilla_within_its_own_tolerance(name, baseline, matched, unmatched):
    metric = metric_named(name)
    assert all(metric.matches(v, baseline) for v in matched), (name, matched)
    assert not any(metric.matches(v, baseline) for v in unmatched), (name, unmatched)


class _GainTask(AbstractTask):
    """A task whose metric no shipped task has: higher is better, and a setting
    matches vanilla within 10 % of vanilla's mean."""

    metric: ClassVar[Metric] = Metric(
        name="toy_gain",
        label="gain",
        higher_is_better=True,
        tolerance=0.1,
    )


def test_a_tasks_metric_object_drives_the_pareto_fronts_and_best_settings(tmp_path):
    points = {"vanilla": {"v": (50.0, 1.0)}}
    # (NFE, gain): d is dominated by c where higher is better (where lower were, all
    # but a would be); b is the cheapest within 10 % of vanilla's gain.
    points["error"] = {"a": (10.0, 0.5), "b": (20.0, 0.95), "c": (30.0, 1.2), "d": (40.0, 1.1)}
    trials = []
    for method, settings in points.items():
        for value, (nfe, gain) in settings.items():
            summary = {"metric": "toy_gain", "test_metric": gain, "test_nfe": nfe}
            run = RunResult(method, 0, tmp_path / method / value, TRAINED, summary)
            trials.append(Trial(method, (("k", value),), 0, run))
    result = SweepResult(tuple(points), ("k",), (0,), tmp_path, tuple(trials))
    assert result.metric is _GainTask.metric
    text = pareto_markdown(result, ["# Sweep"])
    assert "whose mean test toy_gain is at least 0.9 × vanilla's mean (vanilla: 1)." in text
    best = next(line for line in text.splitlines() if line.startswith("| `error` |"))
    assert best.startswith("| `error` | k=b | 20.0 ± n/a | 0.9500 ± n/a |")
    assert best.endswith("| 0.40 | yes |")
    on_front = [line.split(" |")[0][2:] for line in text.splitlines() if line.endswith("| ★ |")]
    assert on_front == ["k=v", "k=a", "k=b", "k=c"]


def _tensorboard_scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars as TensorBoard itself reads them back (its event accumulator, which
    also applies the purge of a resumed run)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def _wandb_history(run_dir: Path) -> list[dict]:
    """The rows logged to the offline W&B run in `run_dir`, read back from its `.wandb`
    file: a 7-byte header (":W&B", magic, version), then LevelDB's log format (32 KiB
    blocks of records: crc32, length, type, payload; a record may be split in fragments)
    whose payloads are W&B's `Record` protobufs."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, position, payload, rows = 32768, 7, b"", []
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's last bytes, too few for a header
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0:  # zero padding: the end of what was written
            break
        payload += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a whole record, or its last fragment
            record = wandb_internal_pb2.Record.FromString(payload)
            payload = b""
            if record.WhichOneof("record_type") == "history":
                items = record.history.item
                rows.append(
                    {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in items}
                )
    return rows


def test_tracking_mirrors_the_metrics(tmp_path, monkeypatch):
    """`tracking=[tensorboard, wandb]`: TensorBoard's event files and the offline W&B run
    (no network: `wandb sync` would upload it) both hold metrics.jsonl's rows."""
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):  # W&B's own files
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    config = load_config(
        CONFIG, [*TINY, "optim.epochs=2", "method=error", "tracking=[tensorboard,wandb]"]
    )
    train(config, run_dir=tmp_path / "run")
    scalars = _tensorboard_scalars(tmp_path / "run" / "tensorboard")
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    history = _wandb_history(tmp_path / "run")
    assert [h["_step"] for h in history] == [1, 2]
    for key in ("train_loss", "test_accuracy", "test_nfe", "train_seconds", "coefficient_error"):
        assert [step for step, _ in scalars[key]] == [1, 2], key
        assert [v for _, v in scalars[key]] == pytest.approx([r[key] for r in rows], rel=1e-6)
        assert [h[key] for h in history] == [r[key] for r in rows], key


def test_tensorboard_after_resume_holds_each_epoch_once(tmp_path):
    # Checkpoints every 2 epochs: stopped after epoch 1, the run resumes from epoch 0.
    common = [*TINY, "optim.epochs=2", "tracking=[tensorboard]", "train.checkpoint_every=2"]
    train(load_config(CONFIG, common), run_dir=tmp_path / "run", stop_after_epoch=1)
    train(load_config(CONFIG, common), run_dir=tmp_path / "run", resume=True)
    scalars = _tensorboard_scalars(tmp_path / "run" / "tensorboard")
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [step for step, _ in scalars["train_loss"]] == [1, 2]
    assert [v for _, v in scalars["train_loss"]] == pytest.approx([r["train_loss"] for r in rows])


def test_grids_name_methods_as_the_methods_list_does():
    assert Grid.parse("error+ stiffness:a.b=1,2").method == "error+stiffness"
    grid = Grid.parse("local-error[a.b=1, c.d=2]:x.y=1,2")
    assert grid.method == "local-error[a.b=1,c.d=2]" and grid.key == "x.y"


def test_a_grid_may_not_sweep_what_a_method_entry_sets(tmp_path):
    entry = "local-error[regularization.local_error.start=1]"
    with pytest.raises(ConfigError, match="sets regularization.local_error.start itself"):
        run_sweep(CONFIG, [entry], ["regularization.local_error.start=1,2"], 1, TINY, tmp_path)


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"workers": 0}, "--workers must be >= 1"),
        ({"cpus_per_trial": 0}, "--cpus-per-trial must be > 0"),
        ({"gpus_per_trial": -1}, "--gpus-per-trial >= 0"),
        ({"address": "auto"}, "--address is for --backend ray"),
    ],
)
def test_bad_backend_options_are_rejected(kwargs, problem):
    with pytest.raises(ConfigError, match=problem):
        make_backend("local", **kwargs)


def test_cli_sweep_default_output_dir_is_sweep_name_under_config_output_dir(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("nderegs.runners.run.train", _fake_train)
    grid = "error:regularization.error.start=0.3,1"
    argv = ["sweep", "--methods", "vanilla,error", "--grid", grid, "--seed-list", "4"]
    assert main([*argv, *TINY, f"output_dir={tmp_path}", "name=a"]) == 0
    folder = tmp_path / "sweep-a"
    assert (folder / "pareto.md").read_text() == capsys.readouterr().out.removesuffix("\n")
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("seed*")) == [
        "error/regularization.error.start-0.3/seed4",
        "error/regularization.error.start-1/seed4",
        "vanilla/seed4",
    ]


def test_a_backend_is_its_entry_in_backends(tmp_path, monkeypatch):
    """`make_backend` and the CLI's --backend read `BACKENDS`: a backend added there
    needs nothing else."""
    made = []

    class Reversed(InProcess):
        def run(self, jobs):
            return super().run(list(reversed(jobs)))

    def reversed_backend(**options):
        made.append(options)
        return Reversed()

    monkeypatch.setitem(BACKENDS, "reversed", reversed_backend)
    monkeypatch.setattr("nderegs.runners.run.train", _fake_train)
    argv = ["sweep", "--methods", "vanilla", "--grid", "solver.max_steps=512,4096"]
    assert (
        main(
            [
                *argv,
                "--seeds",
                "1",
                "--backend",
                "reversed",
                "--workers",
                "3",
                *TINY,
                "--output-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert made == [{"workers": 3, "address": None, "cpus_per_trial": 1, "gpus_per_trial": 0}]
    rows = _rows(tmp_path / "sweep.csv")
    assert [r["solver.max_steps"] for r in rows] == ["512", "4096"]  # the trials' order


def test_unknown_tracker_is_rejected():
    with pytest.raises(ConfigError, match="unknown tracker 'foo'; accepted: tensorboard, wandb"):
        load_config(CONFIG, ["tracking=[foo]"])
