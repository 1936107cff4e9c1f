"""Loading, overriding and saving configs; pydantic's errors become one `ConfigError`
whose message names each offending dotted key and what it accepts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import copy
import difflib
import os
from pathlib import Path
import re
from typing import Any

from pydantic import BaseModel, ValidationError
import yaml

from .base import config_error_of, ConfigError, invalid, Problems
from .experiment import ExperimentConfig
from .legacy import prune, relocate
from .schema import (
    allows_str,
    default_variant,
    literal_choices,
    pick_section,
    section_of,
    variants_of,
)


def _join(parts: Sequence[Any]) -> str:
    return ".".join(str(p) for p in parts)


def _valid_keys(cls: type[BaseModel], prefix: Sequence[str]) -> str:
    where = f"under '{_join(prefix)}'" if prefix else "at top level"
    return f"valid keys {where}: {', '.join(cls.model_fields)}"


def _unknown_key(cls: type[BaseModel], prefix: Sequence[str], key: str) -> str:
    message = f"unknown key '{_join([*prefix, key])}'; {_valid_keys(cls, prefix)}"
    close = difflib.get_close_matches(key, list(cls.model_fields), n=1)
    if close:
        message += f" (did you mean '{close[0]}'?)"
    return message


def _walk_loc(loc: Sequence[Any], data: Any) -> tuple[list[str], type[BaseModel] | None, Any]:
    """Follow pydantic's error location from the top: the dotted key parts (union tags
    dropped), the section owning the last part and that part's annotation."""
    cls: type[BaseModel] | None = ExperimentConfig
    parts: list[str] = []
    annotation: Any = None
    owner: type[BaseModel] | None = cls
    items = list(loc)
    i = 0
    while i < len(items):
        part = str(items[i])
        if cls is None or part not in cls.model_fields:
            parts.extend(str(p) for p in items[i:])
            return parts, cls if i == len(items) - 1 else None, None
        owner = cls
        annotation = cls.model_fields[part].annotation
        parts.append(part)
        data = data.get(part) if isinstance(data, Mapping) else None
        variants = variants_of(annotation)
        if variants is not None and i + 1 < len(items) and str(items[i + 1]) in variants:
            cls = variants[str(items[i + 1])]
            i += 2
            continue
        cls = pick_section(annotation, data)
        i += 1
    return parts, owner, annotation


def _other_variants(parts: Sequence[str], data: Any) -> str:
    """ "; it applies to optim.name=sgd" when other variants of the choice have the key."""
    try:
        annotation = _annotation_at(parts[:-1], data, _join(parts))
    except ConfigError:
        return ""
    options = variants_of(annotation) or {}
    having = [tag for tag, cls in options.items() if parts[-1] in cls.model_fields]
    if not having:
        return ""
    field = next(iter(options.values())).tag_field
    choices = " or ".join(f"{_join([*parts[:-1], field])}={tag}" for tag in having)
    return f"; '{parts[-1]}' applies to {choices}"


_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def _number(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def _messages(error: Mapping[str, Any], data: Any) -> list[str]:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    value = error.get("input")
    parts, owner, annotation = _walk_loc(error.get("loc", ()), data)
    key = _join(parts)
    inner = ctx.get("error")
    if kind == "value_error" and isinstance(inner, Problems):
        return [invalid(_join([*parts, k] if k else parts), v, r) for k, v, r in inner.problems]
    if kind == "extra_forbidden":
        if owner is None:
            return [f"unknown key '{key}'"]
        return [_unknown_key(owner, parts[:-1], parts[-1]) + _other_variants(parts, data)]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        variants = variants_of(annotation) or {}
        field = next(iter(variants.values())).tag_field if variants else "name"
        tag = value.get(field) if isinstance(value, Mapping) else value
        return [invalid(f"{key}.{field}", tag, "must be one of: " + ", ".join(variants))]
    if kind == "literal_error":
        choices = literal_choices(annotation)
        expected = (
            "must be one of: " + ", ".join(map(str, choices)) if choices else "invalid choice"
        )
        return [invalid(key, value, expected)]
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        section = section_of(annotation) or (owner if not parts else None)
        variants = variants_of(annotation)
        if variants:
            section = default_variant(variants)
        hint = f"; {_valid_keys(section, parts)}" if section is not None else ""
        return [invalid(key, value, "expected a mapping" + hint)]
    if kind in _BOUNDS:
        name, op = _BOUNDS[kind]
        return [invalid(key, value, f"must be {op} {_number(ctx.get(name))}")]
    if kind == "missing":
        field = owner.model_fields.get(parts[-1]) if owner is not None and parts else None
        hint = f": {field.description}" if field is not None and field.description else ""
        return [f"missing required key '{key}'{hint}"]
    reasons = {
        "int_": "expected an integer",
        "bool_": "expected true or false",
        "string_": "expected a string",
        "float_": "expected a number",
        "finite_number": "expected a finite number",
    }
    for prefix, reason in reasons.items():
        if kind.startswith(prefix):
            return [invalid(key, value, reason)]
    if kind == "value_error" and inner is not None:
        return [invalid(key, value, str(inner))]
    return [invalid(key, value, str(error.get("msg", "invalid")))]


def config_error(error: ValidationError, data: Any) -> ConfigError:
    """One `ConfigError` listing every problem of `error` (from validating `data`)."""
    problems: list[str] = []
    for item in error.errors():
        for message in _messages(item, data):
            if message not in problems:
                problems.append(message)
    return config_error_of(problems)


# --------------------------------------------------------------------------- #
# Overrides
# --------------------------------------------------------------------------- #

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _annotation_at(parts: Sequence[str], data: Any, item: str) -> Any:
    """The annotation of the dotted key `parts` (None if unknown; validation reports
    unknown keys), reading choices as the variant `data` selects."""
    cls: type[BaseModel] | None = ExperimentConfig
    annotation: Any = None
    for i, part in enumerate(parts):
        if cls is None or part not in cls.model_fields:
            return None
        annotation = cls.model_fields[part].annotation
        data = data.get(part) if isinstance(data, Mapping) else None
        if i < len(parts) - 1:
            cls = pick_section(annotation, data)
            if cls is None:
                raise ConfigError(
                    f"in override {item!r}: '{_join(parts[: i + 1])}' is a value, not a "
                    f"section, so it has no key '{parts[i + 1]}'"
                )
    return annotation


def apply_override(data: dict[str, Any], item: str) -> None:  # noqa: C901
    """Apply ``"a.b=value"`` to the plain mapping `data` (the value is read as YAML,
    except that string fields keep the text as typed)."""
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(
            f"malformed override {item!r}: expected the form key=value with a dotted key, "
            "e.g. solver.rtol=1e-8 or method=error+stiffness"
        )
    key, raw = item.split("=", 1)
    key, raw = key.strip(), raw.strip()
    if not _KEY.match(key):
        raise ConfigError(
            f"malformed override {item!r}: the key {key!r} is not a dotted key; expected "
            "the form key=value, e.g. solver.rtol=1e-8"
        )
    parts = key.split(".")
    annotation = _annotation_at(parts, data, item)
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as exc:
        if not allows_str(annotation):
            raise ConfigError(
                f"in override {item!r}: could not parse the value for '{key}' as YAML: {exc}"
            ) from None
        value = raw
    if allows_str(annotation) and value is not None and not isinstance(value, str):
        value = raw  # e.g. name=2024 stays "2024"
    node: dict[str, Any] = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        tag_field = _tag_field(parts[: i + 1], data)
        if child is None:
            child = node[part] = {}
        elif isinstance(child, str) and tag_field is not None:
            child = node[part] = {tag_field: child}  # `adjoint: backsolve` shorthand
        elif not isinstance(child, dict):
            raise ConfigError(
                invalid(
                    _join(parts[: i + 1]), child, f"expected a mapping, so that '{key}' can be set"
                )
            )
        node = child
    tag_field = _tag_field(parts, data)
    if isinstance(value, str) and isinstance(node.get(parts[-1]), dict) and tag_field is not None:
        # `task=latent_ode` on a task section: choose the variant, keep its other keys
        node[parts[-1]][tag_field] = value
    else:
        node[parts[-1]] = value


def _tag_field(parts: Sequence[str], data: Any) -> str | None:
    """The tag field (``name``/``kind``) if the dotted key `parts` holds a choice."""
    try:
        annotation = _annotation_at(parts, data, _join(parts))
    except ConfigError:
        return None
    options = variants_of(annotation)
    return next(iter(options.values())).tag_field if options else None


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #


def config_from_dict(
    data: Mapping[str, Any] | None = None, overrides: Sequence[str] = ()
) -> ExperimentConfig:
    """Validate a plain mapping (as read from YAML) after applying dotted overrides.
    A config in the layout before nderegs 0.2 (top-level `data`/`model`, `task` a name)
    is read as the same experiment in today's layout."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"the top level of a config must be a mapping of keys, got {type(data).__name__}; "
            + _valid_keys(ExperimentConfig, ())
        )
    if isinstance(overrides, str):
        overrides = [overrides]
    merged = relocate(copy.deepcopy(dict(data)))
    for item in overrides:
        apply_override(merged, item)
    merged = prune(relocate(merged))  # overrides in the old layout, e.g. data.path=...
    try:
        return ExperimentConfig.model_validate(merged)
    except ValidationError as error:
        raise config_error(error, merged) from None


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> ExperimentConfig:
    """Load and validate an experiment config.

    ``path=None`` gives the defaults (identical to ``configs/digits.yaml``).
    ``overrides`` are strings ``"a.b=value"``; the value is read as YAML (so ``1e-6``,
    ``true``, ``[1, 2]``, ``null`` work). Raises `ConfigError` for every problem.
    """
    data: Any = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file not found: '{p}'")
        if not p.is_file():
            raise ConfigError(f"config path is not a file: '{p}'")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"could not read config file '{p}': {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"could not parse YAML in config file '{p}': {exc}") from None
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"the top level of config file '{p}' must be a mapping of keys, got "
                f"{type(data).__name__}; " + _valid_keys(ExperimentConfig, ())
            )
    try:
        return config_from_dict(data, overrides)
    except ConfigError as exc:
        if path is None:
            raise
        raise ConfigError(f"in config file '{path}': {exc}", exc.problems) from None


def config_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """Plain nested dict of built-in types (for YAML / JSON)."""
    return config.model_dump(mode="json")


def save_config(config: ExperimentConfig, path: str | os.PathLike[str]) -> None:
    """Write `config` as YAML; ``load_config(path) == config``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=False)
    p.write_text(text, encoding="utf-8")


def config_changes(old: ExperimentConfig, new: ExperimentConfig) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (old value, new value) for every setting that differs."""
    changes: dict[str, tuple[Any, Any]] = {}

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{prefix}{key}.")
        elif a != b:
            changes[prefix.rstrip(".")] = (a, b)

    walk(config_to_dict(old), config_to_dict(new), "")
    return changes


def configs_dir() -> Path:
    """The bundled `configs/` folder of the repository this package is installed from
    (`pip install -e .`), found from the package's own location, not the working
    directory."""
    directory = Path(__file__).resolve().parents[2] / "configs"
    if not (directory / "digits.yaml").exists():
        raise FileNotFoundError(
            f"The bundled configs are not next to this nderegs installation (looked in "
            f"{directory}). They ship with the repository: clone it and `pip install -e .`, "
            "or pass your own config file."
        )
    return directory
