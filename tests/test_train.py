"""Training loop, schedules, regularization methods and the CLI, end to end on small
settings."""

from collections import OrderedDict
import dataclasses
import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny import TINY

from nderegs.cli import main
from nderegs.config import ConfigError, ExperimentConfig, load_config
from nderegs.config.coefficients import ConstantSchedule, ExponentialSchedule
from nderegs.config.optimizers import inverse_time_decay
from nderegs.tasks import AbstractClassificationTask, Arrays
import nderegs.train
from nderegs.train import compiled_steps, load_run, RunDirectory, train, TrainingDiverged
from nderegs.train.loop import default_run_dir


def _config(tmp_path, *overrides):
    """The suite's tiny digits run (one epoch unless `overrides` say otherwise)."""
    return load_config(None, [*TINY, f"output_dir={tmp_path}", *overrides])


def test_exponential_schedule_anneals_per_epoch_from_start_to_end():
    schedule = ExponentialSchedule(start=100.0, end=10.0).build(epochs=5, typical=1.0)
    per_epoch = [float(schedule.value((), e)) for e in range(5)]
    expected = [100.0 * math.exp(-math.log(10.0) * e / 4) for e in range(5)]
    np.testing.assert_allclose(per_epoch, expected, rtol=1e-5)
    constant = ConstantSchedule(start=0.3).build(epochs=5, typical=1.0)
    assert float(constant.value((), 123)) == pytest.approx(0.3)
    decay = inverse_time_decay(0.1, 1e-2)
    assert decay(100) == pytest.approx(0.05)


@pytest.mark.parametrize(
    "method, local, stiffness, names",
    [
        ("vanilla", None, None, {}),
        ("error+stiffness", None, True, {"error": "error", "stiffness": "stiffness"}),
        ("local-error-biased", "biased", None, {"local-error-biased": "error"}),
        (
            "local-error+local-stiffness",
            "unbiased",
            True,
            {"local-error": "error", "local-stiffness": "stiffness"},
        ),
        # A local coefficient of its own, set by override.
        (
            "stiffness+local-error",
            "unbiased",
            True,
            {"stiffness": "stiffness", "local-error": "local_error"},
        ),
        ("local-stiffness", "unbiased", True, {"local-stiffness": "local_stiffness"}),
    ],
)
def test_regularization_from_method(method, local, stiffness, names):
    own = [
        "regularization.local_error={kind: constant, start: 5}",
        "regularization.local_stiffness={kind: constant, start: 2}",
    ]
    config = load_config(None, [f"method={method}", *(own if "_" in str(names) else [])])
    method = config.method_regularization()
    assert method.setup.local == local and method.setup.stiffness == stiffness
    _, read = config.regularization.build_reading(config.method, epochs=config.optim.epochs)
    assert read == names


def _method(*overrides, config=None):
    config = load_config(config, list(overrides))
    return config.method_regularization()


def test_baseline_regularizations():
    method = _method("method=steer+error", "regularization.steer_b=0.25")
    assert method.setup.steer == 0.25 and method.setup.integrals == ()
    method = _method("method=rnode", "regularization.taynode_order=3")
    assert [type(i).__name__ for i in method.setup.integrals] == [
        "KineticEnergy",
        "JacobianFrobenius",
    ]
    assert list(method.coefficients()) == ["rnode-jacobian", "rnode-kinetic"]
    assert method.coefficient_values(method.init_coefficients(), 0) == {
        "rnode-jacobian": 0.01,
        "rnode-kinetic": 0.01,
    }
    method = _method("method=taynode+local-error", "regularization.taynode_order=3")
    assert method.setup.integrals[0].order == 3 and method.setup.local == "unbiased"
    assert method.setup.integral_names == ("taynode",)
    with pytest.raises(
        ConfigError,
        match="'steer': it changes the end time of the solve, but the latent ODE must reach its data times",
    ):
        load_config(
            "configs/latent_ode_irregular.yaml", ["method=steer", "regularization.steer_b=0.5"]
        )


def test_penalty_adds_each_term_times_its_coefficient():
    from nderegs.core import Heuristics

    method = _method("method=error+stiffness")
    h = Heuristics(
        error=jnp.asarray(2.0),
        stiffness=jnp.asarray(3.0),
        max_stiffness=jnp.asarray(1.0),
        nfe=jnp.asarray(10),
        num_steps=jnp.asarray(2),
        num_accepted_steps=jnp.asarray(2),
        num_rejected_steps=jnp.asarray(0),
        successful=jnp.asarray(True),
    )
    total, aux = method.penalize(jnp.asarray(1.0), h, 4, {"error": 0.5, "stiffness": 0.25})
    with pytest.raises(KeyError, match="missing: stiffness"):
        method.penalize(jnp.asarray(1.0), h, 4, {"error": 0.5})
    assert float(total) == 1.0 + 0.5 * 2.0 + 0.25 * 3.0
    assert float(aux["reg_error"]) == 2.0 and float(aux["reg_stiffness"]) == 3.0


def test_baselines_train(tmp_path):
    # Every baseline in one run (one compilation): STEER, TayNODE and RNODE with the
    # local error regularizer.
    method = "steer+taynode+rnode+local-error"
    summary = train(_config(tmp_path, f"method={method}"), run_dir=tmp_path / "run")
    assert summary["method"] == method and summary["test_nfe"] > 0
    assert len(RunDirectory(tmp_path / "run").read_metrics()) == 1


def _comparable(row):
    return {k: v for k, v in row.items() if "seconds" not in k}


def test_resume_equals_uninterrupted(tmp_path):
    # The local error's coefficient set by a loss budget on the accuracy: a warm-up
    # epoch at λ = 0 measures its reference, then λ moves. Its state is checkpointed
    # with the model, so the resumed run repeats the uninterrupted one exactly.
    config = _config(
        tmp_path,
        "optim.epochs=3",
        "method=local-error",
        "regularization.local_error={kind: loss_budget, tolerance: 0.5, warmup: 1, "
        "constrain: metric}",
    )
    full = train(config, run_dir=tmp_path / "full")
    # The finished run directory: its summary (as returned), config, metrics, model.
    run = tmp_path / "full"
    assert full is not None and json.loads((run / "summary.json").read_text()) == full
    for key in (
        "method",
        "task",
        "seed",
        "metric",
        "train_metric",
        "test_metric",
        "test_nfe",
        "train_seconds",
        "compile_seconds",
        "predict_seconds",
        "num_params",
    ):
        assert key in full
    assert full["method"] == "local-error" and full["metric"] == "accuracy"
    assert 0.0 <= full["test_metric"] <= 1.0 and full["test_nfe"] > 0
    assert full["train_seconds"] > 0 and full["predict_seconds"] > 0
    assert load_config(run / "config.yaml") == config
    model, loaded_config, epoch = load_run(run)
    assert epoch == 3 and loaded_config == config
    logits, _ = model.for_evaluation()(jnp.ones((3, 64)))
    assert logits.shape == (3, 10)
    # Interrupted after epoch 2 and resumed: the same numbers.
    assert train(config, run_dir=tmp_path / "cut", stop_after_epoch=2) is None
    resumed = train(config, run_dir=tmp_path / "cut", resume=True)
    assert resumed is not None
    for key in ("train_metric", "test_metric", "test_nfe", "coefficients"):
        assert resumed[key] == full[key]
    rows = lambda d: [
        _comparable(json.loads(line)) for line in (d / "metrics.jsonl").read_text().splitlines()
    ]
    assert rows(tmp_path / "cut") == rows(tmp_path / "full")
    assert [r["epoch"] for r in rows(run)] == [1, 2, 3]
    assert all("test_nfe" in r for r in rows(run))
    lambdas = [r["coefficient_local-error"] for r in rows(tmp_path / "full")]
    # 0 in the warm-up, the term's usual scale (0.1), then raised: within the budget.
    assert lambdas[0] == 0.0 and lambdas[1] == pytest.approx(0.1) and lambdas[2] > lambdas[1]
    coefficient = full["coefficients"]["local-error"]
    assert coefficient["by_epoch"] == lambdas and coefficient["final"] == lambdas[-1]
    assert coefficient["mean"] == pytest.approx(np.mean(lambdas))


def test_runs_of_one_program_share_its_compiled_step(tmp_path, monkeypatch):
    """Another seed of the same program takes the compiled step of the first run and
    trains exactly as a step compiled afresh; another program gets a key of its own."""
    monkeypatch.setattr(compiled_steps, "_shared", OrderedDict())  # none compiled yet
    first = train(_config(tmp_path, "seed=0"), run_dir=tmp_path / "first")
    shared = train(_config(tmp_path, "seed=1"), run_dir=tmp_path / "shared")
    compiled_steps.clear()
    fresh = train(_config(tmp_path, "seed=1"), run_dir=tmp_path / "fresh")
    assert [run["compiled_step_reused"] for run in (first, shared, fresh)] == [0, 1, 0]
    rows = lambda d: [_comparable(json.loads(line)) for line in (d / "metrics.jsonl").open()]
    assert rows(tmp_path / "shared") == rows(tmp_path / "fresh")
    checkpoint = lambda d: (d / "checkpoint.eqx").read_bytes()
    assert checkpoint(tmp_path / "shared") == checkpoint(tmp_path / "fresh")
    assert _comparable(shared) == _comparable(fresh) | {"compiled_step_reused": True}
    # The seed is no part of the program; a tolerance, a method or a width are.
    task_key = lambda *overrides: compiled_steps.fingerprint(
        values=_config(tmp_path, *overrides).build()[0]
    )
    assert task_key("seed=0") == task_key("seed=7") is not None
    for other in ("solver.rtol=1e-5", "method=stiffness", "task.model.vf_width=4"):
        assert task_key(other) != task_key()
    assert compiled_steps.fingerprint(extra=([1],)) is None  # unhashable: not shared


def _parameters(model):
    return jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))


def test_solver_blow_up_stops_clearly_and_keeps_the_last_checkpoint(tmp_path, tiny_runs):
    run = tiny_runs.copy(tmp_path, "method=error")  # one finished epoch
    before, _, epoch = load_run(run)
    # Extend by another epoch with far too few solver steps allowed (edited into the
    # run's own config.yaml: --resume refuses such a change as an override).
    config = load_config(run / "config.yaml", ["solver.max_steps=2"])
    RunDirectory(run).write_config(config)
    harder = load_config(run / "config.yaml", ["optim.epochs=2"])
    with pytest.raises(
        TrainingDiverged, match=r"solver failed.*max_steps=2.*checkpoint \(after epoch 1\)"
    ):
        train(harder, run_dir=run, resume=True)
    after, _, epoch_after = load_run(run)
    assert epoch_after == epoch == 1
    for a, b in zip(_parameters(before), _parameters(after)):
        np.testing.assert_array_equal(a, b)


def test_nan_loss_stops_clearly(tmp_path, monkeypatch):
    loss = AbstractClassificationTask.loss

    def poisoned(self, *args):
        value, aux = loss(self, *args)
        return value * jnp.nan, aux

    monkeypatch.setattr(AbstractClassificationTask, "loss", poisoned)
    with pytest.raises(TrainingDiverged, match="loss became nan.*checkpoint \\(after epoch 0\\)"):
        train(_config(tmp_path), run_dir=tmp_path / "run")
    model, _, epoch = load_run(tmp_path / "run")
    assert epoch == 0


def test_non_finite_data_stops_clearly(tmp_path, monkeypatch):
    build = ExperimentConfig.build

    def poisoned(self):
        task, arrays = build(self)
        x, y = arrays.train
        return task, Arrays((np.full_like(x, np.nan), y), arrays.test)

    monkeypatch.setattr(ExperimentConfig, "build", poisoned)
    with pytest.raises(TrainingDiverged, match="y0 contains NaN or inf"):
        train(_config(tmp_path), run_dir=tmp_path / "run")


def test_default_run_directory_is_named_after_the_run(tmp_path, monkeypatch, capsys):
    config = _config(tmp_path, "method=error+stiffness", "seed=3")
    first = default_run_dir(config)
    assert first == tmp_path / f"{config.name}-error_stiffness-seed3"
    # `nderegs train` without --run-dir trains there (the training itself: test_cli.py).
    calls = []

    def fake_train(config, *, run_dir, resume, init_from):
        calls.append((run_dir, resume, init_from))
        return {"method": config.method}

    monkeypatch.setattr(nderegs.train, "train", fake_train)
    argv = ["train", *TINY, f"output_dir={tmp_path}", "method=error+stiffness", "seed=3"]
    assert main(argv) == 0
    assert calls == [(None, False, None)]  # the loop picks the default run directory itself
    out, err = capsys.readouterr()
    assert json.loads(out) == {"method": "error+stiffness"}
    assert f"done; run directory {first} " in err
    first.mkdir()
    assert default_run_dir(config) == tmp_path / f"{config.name}-error_stiffness-seed3-2"


def test_cli_train_errors(tmp_path, capsys):
    # (A successful `nderegs train`: test_cli.py's shared run.)
    assert main(["train", "task.model.widht=3"]) == 2
    assert "unknown key 'task.model.widht'" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nope")]) == 2


SPIRAL = [
    "task.name=spiral_sde",
    "task.data.num_samples=200",
    "solver.name=spark",
    "solver.rtol=1e-2",
    "solver.atol=1e-2",
    "task.model.vf_width=8",
    "task.num_trajectories=16",
    "task.predict_trajectories=32",
    "optim.batch_size=1",
    "optim.epochs=1",
    "train.progress=false",
    "train.predict_repeats=2",
]


def test_spiral_sde_trains(tmp_path):
    # The local regularizer and the drift's stiffness (the global error on an SDE task:
    # test_sde_classifier_trains).
    method = "stiffness+local-error"
    config = load_config(None, [*SPIRAL, f"method={method}", f"output_dir={tmp_path}"])
    summary = train(config, run_dir=tmp_path / "run")
    assert summary["metric"] == "mse" and summary["test_metric"] > 0 and summary["test_nfe"] > 0


def test_sde_classifier_trains(tmp_path):
    config = _config(
        tmp_path,
        "task.name=sde_classifier",
        "solver.name=spark",
        "solver.rtol=0.1",
        "solver.atol=0.1",
        "method=error+stiffness",
        "task.predict_trajectories=3",
        "optim.epochs=1",
    )
    summary = train(config, run_dir=tmp_path / "run")
    assert summary["metric"] == "accuracy" and summary["test_nfe"] > 0


@pytest.mark.parametrize(
    "task, field",
    [
        ("classifier", "activation"),
        ("classifier", "field_output_activation"),
        ("latent_ode", "activation"),
        ("density", "activation"),
    ],
)
def test_a_task_built_by_hand_names_its_activations(task, field):
    """Tasks take activation names, as their configs do: a function or an unknown name
    is refused when the task is built, naming the accepted names."""
    built, _ = load_config(None, [f"task={task}"]).build(references=False)
    assert dataclasses.replace(built, **{field: "relu"}).init_model(jax.random.key(0))
    for wrong in (jnp.tanh, "swish"):
        with pytest.raises(ValueError, match=r"expected its name, one of: tanh, sigmoid, "):
            dataclasses.replace(built, **{field: wrong})


def test_sde_task_rejects_ode_only_methods_and_solvers(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"'method': 'rnode' \(the spiral_sde task cannot train with 'rnode': it integrates along an ODE solve",
    ):
        load_config(None, [*SPIRAL, "method=rnode", f"output_dir={tmp_path}"])
    with pytest.raises(
        ConfigError, match="cannot train with 'steer': it changes the end time of an ODE solve"
    ):
        load_config(None, [*SPIRAL, "method=steer"])
    # the task itself checks too, for tasks built without a config
    config = load_config(None, SPIRAL)
    task, _ = config.build()
    with pytest.raises(ValueError, match="SpiralSDETask cannot train with 'taynode'"):
        dataclasses.replace(
            task,
            regularization=load_config(None, ["method=taynode"]).method_regularization(),
        )
    with pytest.raises(
        ConfigError,
        match="'solver.name': 'tsit5' \\(does not apply to task 'spiral_sde'; accepted: heun, spark",
    ):
        load_config(None, [*SPIRAL, "solver.name=tsit5", f"output_dir={tmp_path}"])
