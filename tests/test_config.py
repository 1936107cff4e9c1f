"""Tests for nderegs.config (typed, validated experiment configs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nderegs.config import (
    METHOD_COMPONENTS,
    ConfigError,
    ExperimentConfig,
    ScheduleConfig,
    SolverConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_method,
    save_config,
)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
NEEDS_PATH = {"mnist.yaml", "latent_ode_physionet.yaml"}


def _load(name: str, *overrides: str) -> ExperimentConfig:
    extra = ["data.path=/x"] if name in NEEDS_PATH else []
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
    assert raw.keys() == config_to_dict(ExperimentConfig()).keys()
    for section, values in config_to_dict(ExperimentConfig()).items():
        if isinstance(values, dict):
            assert raw[section].keys() == values.keys(), section


def test_default_values():
    cfg = load_config()
    assert cfg.task == "classifier" and cfg.data.name == "digits"
    assert cfg.model.hidden_size == 32 and cfg.model.vf_width == 32
    assert cfg.solver.name == "tsit5" and cfg.solver.rtol == 1e-6 and cfg.solver.atol == 1e-6
    assert cfg.optim.name == "adam" and cfg.optim.lr == 1e-2
    assert cfg.optim.batch_size == 256 and cfg.optim.epochs == 30
    assert cfg.regularization.error == ScheduleConfig(kind="constant", start=0.1)
    assert cfg.regularization.stiffness == ScheduleConfig(kind="constant", start=0.01)
    assert cfg.method == "vanilla" and cfg.components == frozenset({"vanilla"})


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = _load(path.name)
    assert isinstance(cfg, ExperimentConfig)
    # every value is a real float/int after loading (YAML 1.1 quirks handled)
    assert isinstance(cfg.solver.rtol, float) and isinstance(cfg.optim.lr, float)


def test_mnist_settings():
    cfg = _load("mnist.yaml")
    assert cfg.data.name == "mnist" and cfg.data.path == "/x"
    assert cfg.model.hidden_size == 100 and cfg.model.vf_width == 100
    assert cfg.solver.rtol == 1.4e-8 and cfg.solver.atol == 1.4e-8
    assert cfg.optim.name == "sgd" and cfg.optim.lr == 0.1 and cfg.optim.momentum == 0.9
    assert cfg.optim.inverse_decay == 1e-5
    assert cfg.optim.batch_size == 512 and cfg.optim.epochs == 75
    assert cfg.regularization.error == ScheduleConfig(kind="exponential", start=100.0, end=10.0)


def test_latent_ode_settings():
    irr = _load("latent_ode_irregular.yaml")
    assert irr.task == "latent_ode" and irr.data.name == "irregular"
    assert (irr.model.latent_size, irr.model.encoder_hidden) == (16, 32)
    assert (irr.model.vf_width, irr.model.vf_depth) == (50, 3)
    assert irr.solver.rtol == irr.solver.atol == 1e-5
    assert irr.optim.name == "adamax" and irr.optim.batch_size == 64 and irr.optim.epochs == 30
    assert irr.regularization.kl_anneal_epochs == 5

    phy = _load("latent_ode_physionet.yaml")
    assert phy.task == "latent_ode" and phy.data.name == "physionet"
    assert (phy.model.latent_size, phy.model.vf_width, phy.model.vf_depth) == (20, 50, 3)
    assert phy.optim.batch_size == 50 and phy.optim.epochs == 100


@pytest.mark.parametrize("name", sorted(NEEDS_PATH))
def test_path_required_configs_fail_without_path(name):
    with pytest.raises(ConfigError) as ei:
        load_config(CONFIGS / name)
    msg = str(ei.value)
    assert "data.path" in msg and "required" in msg and name in msg


# --------------------------------------------------------------------------- #
# Overrides and number parsing
# --------------------------------------------------------------------------- #


def test_overrides_nested_keys():
    cfg = load_config(
        None,
        [
            "solver.rtol=1e-8",
            "solver.atol=1E-7",
            "model.vf_depth=3",
            "method=error+stiffness",
            "train.progress=false",
            "optim.grad_clip=1.0",
            "regularization.error.kind=exponential",
            "regularization.error.start=100",
            "regularization.error.end=10",
            "data.subset=null",
            "name=2024",
        ],
    )
    assert cfg.solver.rtol == 1e-8 and type(cfg.solver.rtol) is float
    assert cfg.solver.atol == 1e-7 and type(cfg.solver.atol) is float
    assert cfg.model.vf_depth == 3
    assert cfg.method == "error+stiffness"
    assert cfg.components == frozenset({"error", "stiffness"})
    assert cfg.train.progress is False
    assert cfg.optim.grad_clip == 1.0
    assert cfg.regularization.error == ScheduleConfig(kind="exponential", start=100, end=10)
    assert cfg.data.subset is None
    assert cfg.name == "2024"  # string fields keep the text as typed


def test_later_override_wins_and_section_override():
    cfg = load_config(None, ["seed=1", "seed=2", "regularization.stiffness={kind: constant, start: 0.5}"])
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
    with pytest.raises(ConfigError, match=r"'solver\.rtol'.*expected a number"):
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
    assert "valid keys at top level: name, task, seed, output_dir, method, data" in msg


def test_unknown_nested_key_in_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  widht: 3\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    assert "unknown key 'model.widht'" in msg
    assert "valid keys under 'model': hidden_size, vf_width, vf_depth, activation" in msg
    assert "obs_std" in msg


def test_unknown_key_in_override():
    with pytest.raises(ConfigError) as ei:
        load_config(None, ["regularization.error.strat=1"])
    msg = str(ei.value)
    assert "unknown key 'regularization.error.strat'" in msg
    assert "valid keys under 'regularization.error': kind, start, end" in msg


def test_override_into_a_value_is_rejected():
    with pytest.raises(ConfigError, match=r"'seed' is a value, not a section"):
        load_config(None, ["seed.x=1"])


@pytest.mark.parametrize(
    "override, key, needle",
    [
        ("model.hidden_size=abc", "model.hidden_size", "expected an integer"),
        ("model.hidden_size=1.5", "model.hidden_size", "expected an integer"),
        ("train.progress=1", "train.progress", "expected true or false"),
        ("seed=true", "seed", "expected an integer"),
        ("solver.rtol=true", "solver.rtol", "expected a number"),
        ("model=5", "model", "expected a mapping; valid keys under 'model'"),
    ],
)
def test_wrong_type(override, key, needle):
    with pytest.raises(ConfigError) as ei:
        load_config(None, [override])
    msg = str(ei.value)
    assert f"invalid value for '{key}'" in msg and needle in msg


@pytest.mark.parametrize(
    "override, key, needle",
    [
        ("solver.rtol=0", "solver.rtol", "must be > 0"),
        ("solver.atol=-1e-6", "solver.atol", "must be > 0"),
        ("seed=-1", "seed", "must be >= 0"),
        ("data.test_fraction=1", "data.test_fraction", "must be < 1"),
        ("data.test_fraction=0", "data.test_fraction", "must be > 0"),
        ("optim.momentum=1.0", "optim.momentum", "must be < 1"),
        ("model.vf_depth=0", "model.vf_depth", "must be >= 1"),
        ("optim.grad_clip=0", "optim.grad_clip", "must be > 0"),
        ("solver.t1=0", "solver.t1", "must differ from t0"),
    ],
)
def test_out_of_range(override, key, needle):
    with pytest.raises(ConfigError) as ei:
        load_config(None, [override])
    msg = str(ei.value)
    assert f"invalid value for '{key}'" in msg and needle in msg


def test_bad_choice_lists_choices():
    with pytest.raises(ConfigError) as ei:
        load_config(None, ["solver.name=rk4"])
    msg = str(ei.value)
    assert "invalid value for 'solver.name': 'rk4'" in msg
    assert "must be one of: tsit5, dopri5, dopri8, bosh3, heun" in msg


def test_exponential_schedule_needs_positive_start_and_end():
    with pytest.raises(ConfigError) as ei:
        load_config(None, ["regularization.stiffness.kind=exponential"])
    msg = str(ei.value)
    assert "'regularization.stiffness.start'" in msg and "'regularization.stiffness.end'" in msg
    with pytest.raises(ConfigError, match=r"'regularization\.error\.end'"):
        load_config(
            None,
            [
                "regularization.error.kind=exponential",
                "regularization.error.start=1",
                "regularization.error.end=0",
            ],
        )
    # constant ignores end
    load_config(None, ["regularization.error.end=5"])


def test_several_problems_are_all_reported():
    with pytest.raises(ConfigError) as ei:
        load_config(None, ["seed=-1", "solver.rtol=x", "optim.name=lbfgs"])
    assert len(ei.value.problems) == 3
    msg = str(ei.value)
    for key in ("'seed'", "'solver.rtol'", "'optim.name'"):
        assert key in msg


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


def test_local_sampling_effective():
    assert load_config(None, ["method=local-error"]).local_sampling_effective == "unbiased"
    assert load_config(None, ["method=local-error-biased"]).local_sampling_effective == "biased"
    cfg = load_config(None, ["method=local-error", "regularization.local_sampling=biased"])
    assert cfg.local_sampling_effective == "biased"


# --------------------------------------------------------------------------- #
# Cross-checks
# --------------------------------------------------------------------------- #


def test_mnist_without_path():
    with pytest.raises(ConfigError) as ei:
        load_config(None, ["data.name=mnist"])
    msg = str(ei.value)
    assert "invalid value for 'data.path'" in msg and "required" in msg and "mnist" in msg
    cfg = load_config(CONFIGS / "mnist.yaml", ["data.path=/x"])
    assert cfg.data.path == "/x"


def test_classifier_with_time_series_data():
    with pytest.raises(ConfigError) as ei:
        load_config(None, ["data.name=spirals"])
    msg = str(ei.value)
    assert "'data.name'" in msg and "'task'" in msg and "classifier" in msg
    assert "digits" in msg and "mnist1d" in msg


def test_latent_ode_with_image_data():
    with pytest.raises(ConfigError) as ei:
        load_config(CONFIGS / "latent_ode_irregular.yaml", ["data.name=digits"])
    msg = str(ei.value)
    assert "'data.name'" in msg and "latent_ode" in msg and "irregular" in msg


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
    assert "components" not in d and "local_sampling_effective" not in d
    yaml.safe_dump(d)  # only built-in types


def test_direct_construction_and_assignment_raise_config_error():
    with pytest.raises(ConfigError, match=r"'rtol'.*must be > 0"):
        SolverConfig(rtol=-1)
    cfg = load_config()
    with pytest.raises(ConfigError, match=r"'method'"):
        cfg.method = "nonsense"
    with pytest.raises(ConfigError, match=r"'rtol'"):
        cfg.solver.rtol = 0.0
    cfg.solver.rtol = "1e-7"
    assert cfg.solver.rtol == 1e-7
    assert ExperimentConfig(solver=SolverConfig(name="dopri5")).solver.name == "dopri5"
