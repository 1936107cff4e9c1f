"""Typed, validated experiment configuration.

An experiment is described by one YAML file (see ``configs/``) plus optional
dotted command-line overrides such as ``solver.rtol=1e-8`` or
``method=error+stiffness``.  Everything is validated by pydantic v2 models;
every problem is reported as a :class:`ConfigError` whose message names the
offending dotted key and says what is accepted.

Public API
----------
* :func:`load_config` -- YAML file (or defaults) + overrides -> :class:`ExperimentConfig`
* :func:`config_from_dict` -- plain mapping + overrides -> :class:`ExperimentConfig`
* :func:`config_to_dict` / :func:`save_config` -- plain dict / YAML file; a saved
  file round-trips exactly through :func:`load_config`
* :func:`parse_method` -- ``"error+stiffness"`` -> ``frozenset({"error", "stiffness"})``
* :class:`ConfigError` -- the one exception type raised for configuration problems

Methods
-------
``method`` is a ``+``-joined set of regularization components (see
:data:`METHOD_COMPONENTS`).  A component only switches its term on; the size
of the term is set by the matching coefficient under ``regularization``
(``error`` / ``local-error*`` -> ``regularization.error``, ``stiffness`` /
``local-stiffness`` -> ``regularization.stiffness``, ``taynode`` ->
``regularization.taynode``, ``rnode`` -> ``regularization.kinetic`` and
``regularization.jacobian``, ``steer`` -> ``regularization.steer_b``).
A coefficient of 0 is allowed and simply means the term has no effect.

Numbers
-------
PyYAML implements YAML 1.1, which reads ``1e-6`` (no dot, unsigned exponent)
as a *string*.  All float fields therefore accept numeric strings, so
``rtol: 1e-6`` in a file and ``solver.rtol=1e-6`` on the command line both
give the float ``1e-06``.  Integer and boolean fields are strict (``3.0`` is
not an integer, ``1`` is not a boolean).
"""

from __future__ import annotations

import difflib
import math
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "DataConfig",
    "ModelConfig",
    "SolverConfig",
    "ScheduleConfig",
    "RegularizationConfig",
    "OptimConfig",
    "TrainConfig",
    "METHOD_COMPONENTS",
    "CLASSIFIER_DATASETS",
    "LATENT_ODE_DATASETS",
    "SPIRAL_SDE_DATASETS",
    "TASK_DATASETS",
    "DATASETS_NEEDING_PATH",
    "parse_method",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "save_config",
]


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #


class ConfigError(ValueError):
    """A configuration problem.

    ``str(err)`` is a human-readable message naming the offending dotted key(s);
    ``err.problems`` is the list of individual problem messages.
    """

    def __init__(self, message: str, problems: Sequence[str] | None = None):
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems is not None else [message]
        # pydantic error dicts this error was made from (used to re-locate the
        # errors of a nested section when pydantic wraps them).
        self._pydantic_errors: list[dict[str, Any]] = []


class _Problems(ValueError):
    """Raised inside validators; converted to :class:`ConfigError` messages.

    Each problem is ``(key, value, reason)`` where ``key`` is a dotted key
    *relative to the model that raised it* (or ``None`` for the location
    pydantic reports).
    """

    def __init__(self, *problems: tuple[str | None, Any, str]):
        super().__init__("; ".join(f"{k}: {r}" for k, _, r in problems))
        self.problems = problems


def _fmt_value(value: Any) -> str:
    return repr(value)


def _fmt_num(x: Any) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def _invalid(key: str, value: Any, reason: str) -> str:
    return f"invalid value for '{key}': {_fmt_value(value)} ({reason})"


# --------------------------------------------------------------------------- #
# Field types
# --------------------------------------------------------------------------- #


def _coerce_float(value: Any) -> Any:
    """Accept real numbers and numeric strings (YAML 1.1 reads ``1e-6`` as a str)."""
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    if isinstance(value, (int, float)):
        x = float(value)
    elif isinstance(value, str):
        try:
            x = float(value.strip())
        except ValueError:
            raise ValueError("expected a number") from None
    else:
        raise ValueError("expected a number")
    if not math.isfinite(x):
        raise ValueError("expected a finite number")
    return x


Float = Annotated[float, BeforeValidator(_coerce_float)]
Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]

_BASE_CONFIG = ConfigDict(extra="forbid", validate_assignment=True)


class _Section(BaseModel):
    """Base class: converts pydantic ``ValidationError`` into :class:`ConfigError`."""

    model_config = _BASE_CONFIG

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise _convert_validation_error(e, type(self)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as e:
            raise _convert_validation_error(e, type(self)) from None

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any):  # type: ignore[override]
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as e:
            raise _convert_validation_error(e, cls) from None


# --------------------------------------------------------------------------- #
# Sections
# --------------------------------------------------------------------------- #

CLASSIFIER_DATASETS: tuple[str, ...] = ("digits", "mnist", "mnist1d")
LATENT_ODE_DATASETS: tuple[str, ...] = ("spirals", "irregular", "physionet")
SPIRAL_SDE_DATASETS: tuple[str, ...] = ("spiral_sde",)
#: task -> the data sets it accepts
TASK_DATASETS: dict[str, tuple[str, ...]] = {
    "classifier": CLASSIFIER_DATASETS,
    "sde_classifier": CLASSIFIER_DATASETS,
    "latent_ode": LATENT_ODE_DATASETS,
    "spiral_sde": SPIRAL_SDE_DATASETS,
}
DATASETS_NEEDING_PATH: tuple[str, ...] = ("mnist", "physionet")


class DataConfig(_Section):
    """Which data set to use and how to split / subsample it."""

    name: Literal[
        "digits", "mnist", "mnist1d", "spirals", "irregular", "physionet", "spiral_sde"
    ] = "digits"
    #: Location of the data on disk; required for mnist and physionet.
    path: Optional[Str] = None
    #: Fraction of the examples held out for evaluation.
    test_fraction: Float = Field(default=0.2, gt=0, lt=1)
    #: Number of examples to generate (generated data sets); None -> loader default.
    num_samples: Optional[Int] = Field(default=None, gt=0)
    #: Use only the first N training examples (None -> all).
    subset: Optional[Int] = Field(default=None, gt=0)


class ModelConfig(_Section):
    """Network sizes for the classifier and the latent ODE."""

    #: ODE state width (classifier).
    hidden_size: Int = Field(default=32, gt=0)
    #: Width of the vector-field MLP.
    vf_width: Int = Field(default=32, gt=0)
    #: Number of hidden layers in the vector-field MLP.
    vf_depth: Int = Field(default=1, ge=1)
    activation: Literal["tanh", "sigmoid", "softplus", "relu", "gelu"] = "tanh"
    #: Latent ODE: latent state size.
    latent_size: Int = Field(default=16, gt=0)
    #: Latent ODE: GRU encoder width.
    encoder_hidden: Int = Field(default=32, gt=0)
    #: Latent ODE: decoder MLP width.
    decoder_width: Int = Field(default=32, gt=0)
    #: Latent ODE: standard deviation of the Gaussian observation likelihood.
    obs_std: Float = Field(default=0.01, gt=0)
    #: SDE tasks: sampled trajectories per input (classifier) or per loss (spiral) in training.
    num_trajectories: Int = Field(default=1, gt=0)
    #: SDE tasks: trajectories averaged at evaluation (logits, or moments).
    predict_trajectories: Int = Field(default=10, gt=0)


class SolverConfig(_Section):
    """Adaptive ODE solver settings."""

    #: ODE solvers: tsit5 dopri5 dopri8 bosh3; SDE solvers (SDE tasks): spark
    #: (general noise), shark / sra1 (additive noise), heun.
    name: Literal["tsit5", "dopri5", "dopri8", "bosh3", "heun", "spark", "shark", "sra1"] = "tsit5"
    rtol: Float = Field(default=1e-6, gt=0)
    atol: Float = Field(default=1e-6, gt=0)
    #: diffrax.PIDController coefficients (pcoeff=0, icoeff=1: the I controller).
    pcoeff: Float = Field(default=0.0, ge=0)
    icoeff: Float = Field(default=1.0, gt=0)
    t0: Float = 0.0
    t1: Float = 1.0
    max_steps: Int = Field(default=4096, gt=0)
    adjoint: Literal["recursive_checkpoint", "direct", "backsolve"] = "recursive_checkpoint"
    #: Initial step size; None -> chosen by the solver.
    dt0: Optional[Float] = None
    #: SDE tasks: tolerance of the virtual Brownian tree.
    brownian_tol: Float = Field(default=1e-3, gt=0)

    @model_validator(mode="after")
    def _check_interval(self) -> "SolverConfig":
        if self.t1 == self.t0:
            raise _Problems(("t1", self.t1, "must differ from t0"))
        return self


class ScheduleConfig(_Section):
    """A coefficient schedule.

    ``constant``: the value is ``start`` throughout (``end`` is ignored).
    ``exponential``: geometric interpolation from ``start`` to ``end`` over
    training; both must be > 0.
    """

    kind: Literal["constant", "exponential"] = "constant"
    start: Float = Field(default=0.0, ge=0)
    end: Optional[Float] = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check_exponential(self) -> "ScheduleConfig":
        if self.kind == "exponential":
            problems = []
            if not self.start > 0:
                problems.append(("start", self.start, "kind 'exponential' needs start > 0"))
            if self.end is None or not self.end > 0:
                problems.append(("end", self.end, "kind 'exponential' needs end > 0"))
            if problems:
                raise _Problems(*problems)
        return self


def _constant(value: float) -> Any:
    return lambda: ScheduleConfig(kind="constant", start=value)


class RegularizationConfig(_Section):
    """Coefficients of the regularization terms.

    A term is only used when ``method`` contains the matching component; a
    coefficient of 0 means the term has no effect.
    """

    #: Coefficient of R_E (global ``error``; also ``local-error*`` unless set below).
    error: ScheduleConfig = Field(default_factory=_constant(0.1))
    #: Coefficient of R_S (global ``stiffness``; also ``local-stiffness`` unless set below).
    stiffness: ScheduleConfig = Field(default_factory=_constant(0.01))
    #: Coefficients of the local terms (``local-error*``, ``local-stiffness``); None -> the
    #: global one above (the local terms are unbiased estimates of R_E and R_S).
    local_error: Optional[ScheduleConfig] = None
    local_stiffness: Optional[ScheduleConfig] = None
    #: Sampling of the step used by local regularizers.
    local_sampling: Literal["unbiased", "biased"] = "unbiased"
    #: STEER: end time is sampled from [t1 - b, t1 + b] (component ``steer``).
    steer_b: Float = Field(default=0.5, ge=0)
    #: TayNODE: order of the derivative penalized (component ``taynode``).
    taynode_order: Int = Field(default=2, ge=1)
    taynode: ScheduleConfig = Field(default_factory=_constant(0.0))
    #: RNODE (component ``rnode``): kinetic-energy and Jacobian-Frobenius coefficients.
    kinetic: ScheduleConfig = Field(default_factory=_constant(0.0))
    jacobian: ScheduleConfig = Field(default_factory=_constant(0.0))
    #: Latent ODE: number of epochs over which the KL weight warms up 0 -> 1.
    kl_anneal_epochs: Int = Field(default=0, ge=0)


class OptimConfig(_Section):
    """Optimizer and batch settings."""

    name: Literal["adam", "adamax", "sgd", "adabelief"] = "adam"
    lr: Float = Field(default=1e-2, gt=0)
    #: SGD momentum.
    momentum: Float = Field(default=0.9, ge=0, lt=1)
    #: Learning rate is lr / (1 + inverse_decay * step).
    inverse_decay: Float = Field(default=0.0, ge=0)
    weight_decay: Float = Field(default=0.0, ge=0)
    #: Global-norm gradient clipping; None -> no clipping.
    grad_clip: Optional[Float] = Field(default=None, gt=0)
    batch_size: Int = Field(default=256, gt=0)
    epochs: Int = Field(default=30, gt=0)


class TrainConfig(_Section):
    """Training-loop bookkeeping."""

    #: Epochs between evaluations (one metrics.jsonl row each).
    eval_every: Int = Field(default=1, gt=0)
    checkpoint_every: Int = Field(default=1, gt=0)
    #: Batch size for evaluation; None -> optim.batch_size.
    eval_batch_size: Optional[Int] = Field(default=None, gt=0)
    #: Repetitions when timing prediction.
    predict_repeats: Int = Field(default=5, gt=0)
    progress: Bool = True


# --------------------------------------------------------------------------- #
# Methods
# --------------------------------------------------------------------------- #

#: Valid components of ``method``.
METHOD_COMPONENTS: tuple[str, ...] = (
    "vanilla",
    "error",
    "stiffness",
    "local-error",
    "local-error-biased",
    "local-stiffness",
    "steer",
    "taynode",
    "rnode",
)

_CONFLICTS: tuple[tuple[str, str], ...] = (
    ("error", "local-error"),
    ("error", "local-error-biased"),
    ("local-error", "local-error-biased"),
    ("stiffness", "local-stiffness"),
)


def _method_problem(method: Any) -> tuple[frozenset[str], str | None]:
    """Return ``(components, None)`` or ``(frozenset(), reason)``."""
    valid = ", ".join(METHOD_COMPONENTS)
    if not isinstance(method, str):
        return frozenset(), f"expected a string of '+'-joined components from: {valid}"
    parts = [p.strip() for p in method.split("+")]
    if any(p == "" for p in parts):
        return frozenset(), f"empty component; expected '+'-joined components from: {valid}"
    unknown = [p for p in parts if p not in METHOD_COMPONENTS]
    if unknown:
        names = ", ".join(f"'{u}'" for u in unknown)
        word = "component" if len(unknown) == 1 else "components"
        return frozenset(), f"unknown {word} {names}; valid components: {valid}"
    dups = sorted({p for p in parts if parts.count(p) > 1})
    if dups:
        return frozenset(), "duplicate component " + ", ".join(f"'{d}'" for d in dups)
    comps = frozenset(parts)
    if "vanilla" in comps and len(comps) > 1:
        return frozenset(), "'vanilla' cannot be combined with other components"
    for a, b in _CONFLICTS:
        if a in comps and b in comps:
            return frozenset(), f"components '{a}' and '{b}' cannot be used together"
    return comps, None


def parse_method(method: str) -> frozenset[str]:
    """Split a ``+``-joined method string into its validated set of components.

    ``parse_method("vanilla") == frozenset({"vanilla"})``.  Raises
    :class:`ConfigError` (naming key ``'method'``) on unknown, duplicate or
    conflicting components.
    """
    comps, reason = _method_problem(method)
    if reason is not None:
        raise ConfigError(_invalid("method", method, reason))
    return comps


# --------------------------------------------------------------------------- #
# Experiment
# --------------------------------------------------------------------------- #


class ExperimentConfig(_Section):
    """A complete experiment.  ``ExperimentConfig()`` equals ``configs/digits.yaml``."""

    #: Run name prefix.
    name: Str = "digits"
    task: Literal["classifier", "latent_ode", "sde_classifier", "spiral_sde"] = "classifier"
    seed: Int = Field(default=0, ge=0)
    output_dir: Str = "runs"
    #: '+'-joined regularization components, see METHOD_COMPONENTS.
    method: Str = "vanilla"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    solver: SolverConfig = Field(default_factory=SolverConfig)
    regularization: RegularizationConfig = Field(default_factory=RegularizationConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @field_validator("method")
    @classmethod
    def _check_method(cls, value: str) -> str:
        _, reason = _method_problem(value)
        if reason is not None:
            raise _Problems((None, value, reason))
        # normalise whitespace around '+'
        return "+".join(p.strip() for p in value.split("+"))

    @model_validator(mode="after")
    def _cross_checks(self) -> "ExperimentConfig":
        problems = []
        allowed = TASK_DATASETS[self.task]
        if self.data.name not in allowed:
            problems.append(
                (
                    "data.name",
                    self.data.name,
                    f"task '{self.task}' (key 'task') needs data.name in "
                    f"{' | '.join(allowed)}",
                )
            )
        if self.data.name in DATASETS_NEEDING_PATH and self.data.path is None:
            problems.append(
                (
                    "data.path",
                    None,
                    f"required when data.name is '{self.data.name}'; "
                    f"pass it e.g. as the override data.path=/path/to/{self.data.name}",
                )
            )
        if problems:
            raise _Problems(*problems)
        return self

    @property
    def components(self) -> frozenset[str]:
        """The set of method components, e.g. ``frozenset({"error", "stiffness"})``."""
        return parse_method(self.method)

    @property
    def local_sampling_effective(self) -> Literal["unbiased", "biased"]:
        """``"biased"`` if method has ``local-error-biased``, else ``regularization.local_sampling``."""
        if "local-error-biased" in self.components:
            return "biased"
        return self.regularization.local_sampling


# --------------------------------------------------------------------------- #
# Schema walking and error conversion
# --------------------------------------------------------------------------- #


def _unwrap(annotation: Any) -> list[Any]:
    """Flatten Optional/Union/Annotated into the list of member types."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        out: list[Any] = []
        for a in typing.get_args(annotation):
            out.extend(_unwrap(a))
        return out
    return [annotation]


def _section_class(annotation: Any) -> type[BaseModel] | None:
    for t in _unwrap(annotation):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _literal_choices(annotation: Any) -> tuple[Any, ...] | None:
    for t in _unwrap(annotation):
        if typing.get_origin(t) is Literal:
            return typing.get_args(t)
    return None


def _allows_str(annotation: Any) -> bool:
    return any(t is str for t in _unwrap(annotation))


def _join(prefix: Sequence[str], key: str | None = None) -> str:
    parts = list(prefix) + ([key] if key else [])
    return ".".join(str(p) for p in parts)


def _valid_keys_phrase(cls: type[BaseModel], prefix: Sequence[str]) -> str:
    keys = ", ".join(cls.model_fields)
    where = f"under '{_join(prefix)}'" if prefix else "at top level"
    return f"valid keys {where}: {keys}"


def _unknown_key_message(cls: type[BaseModel], prefix: Sequence[str], key: str) -> str:
    msg = f"unknown key '{_join(prefix, key)}'; {_valid_keys_phrase(cls, prefix)}"
    close = difflib.get_close_matches(key, list(cls.model_fields), n=1)
    if close:
        msg += f" (did you mean '{close[0]}'?)"
    return msg


def _walk(root: type[BaseModel], loc: Sequence[Any]) -> tuple[type[BaseModel] | None, Any]:
    """Follow ``loc`` from ``root``: return (model owning the last part, its annotation)."""
    cls: type[BaseModel] | None = root
    annotation: Any = None
    for i, part in enumerate(loc):
        if cls is None or part not in cls.model_fields:
            return None, None
        annotation = cls.model_fields[part].annotation
        if i < len(loc) - 1:
            cls = _section_class(annotation)
    return cls, annotation


def _error_message(err: Mapping[str, Any], root: type[BaseModel]) -> list[str]:
    loc = [str(p) for p in err.get("loc", ())]
    etype = err.get("type", "")
    ctx = err.get("ctx") or {}
    value = err.get("input")

    inner = ctx.get("error")
    if etype == "value_error" and isinstance(inner, ConfigError) and inner._pydantic_errors:
        # A nested section's __init__ failed; re-locate its errors under ``loc``.
        out = []
        for sub in inner._pydantic_errors:
            sub = dict(sub)
            sub["loc"] = tuple(loc) + tuple(sub.get("loc", ()))
            out.extend(_error_message(sub, root))
        return out

    if etype == "value_error" and isinstance(inner, _Problems):
        out = []
        for key, val, reason in ctx["error"].problems:
            out.append(_invalid(_join(loc, key), val, reason))
        return out

    key = _join(loc)
    if etype == "extra_forbidden":
        if len(loc) > 1:
            _, parent_annotation = _walk(root, loc[:-1])
            owner = _section_class(parent_annotation) if parent_annotation is not None else None
        else:
            owner = root
        if owner is None:
            return [f"unknown key '{key}'"]
        return [_unknown_key_message(owner, loc[:-1], loc[-1])]

    _, annotation = _walk(root, loc)
    if etype == "literal_error":
        choices = _literal_choices(annotation)
        if choices is None:
            return [_invalid(key, value, f"must be {ctx.get('expected', 'a valid choice')}")]
        return [_invalid(key, value, "must be one of: " + ", ".join(map(str, choices)))]
    if etype in ("model_type", "model_attributes_type", "dict_type"):
        section = _section_class(annotation) if annotation is not None else None
        if section is not None:
            return [
                _invalid(
                    key,
                    value,
                    f"expected a mapping; {_valid_keys_phrase(section, loc)}",
                )
            ]
        return [_invalid(key, value, "expected a mapping")]

    bounds = {
        "greater_than": ("gt", ">"),
        "greater_than_equal": ("ge", ">="),
        "less_than": ("lt", "<"),
        "less_than_equal": ("le", "<="),
    }
    if etype in bounds:
        name, op = bounds[etype]
        return [_invalid(key, value, f"must be {op} {_fmt_num(ctx.get(name))}")]
    if etype.startswith("int_"):
        return [_invalid(key, value, "expected an integer")]
    if etype.startswith("bool_"):
        return [_invalid(key, value, "expected true or false")]
    if etype.startswith("string_"):
        return [_invalid(key, value, "expected a string")]
    if etype.startswith("float_"):
        return [_invalid(key, value, "expected a number")]
    if etype == "value_error" and ctx.get("error") is not None:
        return [_invalid(key, value, str(ctx["error"]))]
    if etype == "missing":
        return [f"missing required key '{key}'"]
    return [_invalid(key, value, str(err.get("msg", "invalid")))]


def _convert_validation_error(e: ValidationError, root: type[BaseModel]) -> ConfigError:
    errors = e.errors()
    problems: list[str] = []
    for err in errors:
        for msg in _error_message(err, root):
            if msg not in problems:
                problems.append(msg)
    if not problems:  # pragma: no cover - defensive
        problems = [str(e)]
    if len(problems) == 1:
        exc = ConfigError(problems[0], problems)
    else:
        exc = ConfigError(
            f"{len(problems)} problems in config:\n" + "\n".join(f"  - {p}" for p in problems),
            problems,
        )
    exc._pydantic_errors = _flatten_errors(errors)
    return exc


def _flatten_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Replace wrapped nested-section errors by their own (re-located) errors."""
    out: list[dict[str, Any]] = []
    for err in errors:
        inner = (err.get("ctx") or {}).get("error")
        if (
            err.get("type") == "value_error"
            and isinstance(inner, ConfigError)
            and inner._pydantic_errors
        ):
            for sub in inner._pydantic_errors:
                sub = dict(sub)
                sub["loc"] = tuple(err.get("loc", ())) + tuple(sub.get("loc", ()))
                out.append(sub)
        else:
            out.append(dict(err))
    return out


# --------------------------------------------------------------------------- #
# Loading, overrides, saving
# --------------------------------------------------------------------------- #

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _parse_override(item: str) -> tuple[list[str], Any]:
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(
            f"malformed override {item!r}: expected the form key=value "
            f"with a dotted key, e.g. solver.rtol=1e-8 or method=error+stiffness"
        )
    key, raw = item.split("=", 1)
    key = key.strip()
    if not _KEY_RE.match(key):
        raise ConfigError(
            f"malformed override {item!r}: the key {key!r} is not a dotted key; "
            f"expected the form key=value, e.g. solver.rtol=1e-8"
        )
    parts = key.split(".")

    # Check the key against the schema for a precise message.
    cls: type[BaseModel] | None = ExperimentConfig
    annotation: Any = None
    for i, part in enumerate(parts):
        assert cls is not None
        if part not in cls.model_fields:
            raise ConfigError(
                f"in override {item!r}: " + _unknown_key_message(cls, parts[:i], part)
            )
        annotation = cls.model_fields[part].annotation
        if i < len(parts) - 1:
            cls = _section_class(annotation)
            if cls is None:
                raise ConfigError(
                    f"in override {item!r}: '{_join(parts[: i + 1])}' is a value, "
                    f"not a section, so it has no key '{parts[i + 1]}'"
                )

    raw_stripped = raw.strip()
    try:
        value = yaml.safe_load(raw_stripped) if raw_stripped else None
    except yaml.YAMLError as exc:
        if _allows_str(annotation):
            value = raw_stripped
        else:
            raise ConfigError(
                f"in override {item!r}: could not parse the value for '{key}' as YAML: {exc}"
            ) from None
    # String fields keep the text as typed (e.g. name=2024 stays "2024"), except null.
    if _allows_str(annotation) and value is not None and not isinstance(value, str):
        value = raw_stripped
    return parts, value


def _apply_override(data: dict[str, Any], parts: list[str], value: Any) -> None:
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = {}
            node[part] = child
        elif not isinstance(child, dict):
            raise ConfigError(
                _invalid(
                    _join(parts[: i + 1]),
                    child,
                    f"expected a mapping, so that '{_join(parts)}' can be set",
                )
            )
        node = child
    node[parts[-1]] = value


def config_from_dict(
    data: Mapping[str, Any] | None = None, overrides: Sequence[str] = ()
) -> ExperimentConfig:
    """Validate a plain mapping (as read from YAML) after applying dotted overrides."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"the top level of a config must be a mapping of keys, got {type(data).__name__}; "
            + _valid_keys_phrase(ExperimentConfig, ())
        )
    if isinstance(overrides, str):
        overrides = [overrides]
    merged: dict[str, Any] = _deep_copy(dict(data))
    for item in overrides:
        parts, value = _parse_override(item)
        _apply_override(merged, parts, value)
    return ExperimentConfig.model_validate(merged)


def _deep_copy(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _deep_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deep_copy(v) for v in obj]
    return obj


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> ExperimentConfig:
    """Load and validate an experiment config.

    ``path=None`` gives the defaults (identical to ``configs/digits.yaml``).
    ``overrides`` are strings ``"a.b=value"``; the value is parsed with
    ``yaml.safe_load`` (so ``1e-6``, ``true``, ``[1, 2]``, ``null`` work).
    Raises :class:`ConfigError` for every problem.
    """
    data: Any = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file not found: '{p}'")
        if not p.is_file():
            raise ConfigError(f"config path is not a file: '{p}'")
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"could not read config file '{p}': {exc}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"could not parse YAML in config file '{p}': {exc}") from None
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"the top level of config file '{p}' must be a mapping of keys, "
                f"got {type(data).__name__}; " + _valid_keys_phrase(ExperimentConfig, ())
            )
    try:
        return config_from_dict(data, overrides)
    except ConfigError as exc:
        if path is None:
            raise
        raise ConfigError(f"in config file '{path}': {exc}", exc.problems) from None


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """Plain nested dict of built-in types (suitable for YAML / JSON)."""
    return cfg.model_dump(mode="json")


def save_config(cfg: ExperimentConfig, path: str | os.PathLike[str]) -> None:
    """Write ``cfg`` as YAML; ``load_config(path) == cfg``."""
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)
    p.write_text(text, encoding="utf-8")
