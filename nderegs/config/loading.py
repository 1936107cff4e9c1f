"""Loading, overriding and saving configs; pydantic's errors become one `ConfigError`
whose message names each offending dotted key and what it accepts, and whether the
problem is the config file's or the overrides' (naming those)."""

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
from .schema import (
    allows_str,
    annotation_of,
    literal_choices,
    members_of,
    options_of,
    pick_section,
    section_of,
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


def _walk_loc(loc: Sequence[Any]) -> tuple[list[str], type[BaseModel] | None, list[Any]]:
    """Follow pydantic's error location from the top: the dotted key parts (the tags of
    unions dropped), the section owning the last part (None past the schema) and the
    annotation of each part the schema knows."""
    items = [str(p) for p in loc]
    parts: list[str] = []
    annotations: list[Any] = []
    cls: type[BaseModel] | None = ExperimentConfig
    owner, i = cls, 0
    while i < len(items):
        if cls is None or items[i] not in cls.model_fields:
            return [*parts, *items[i:]], cls if i == len(items) - 1 else None, annotations
        owner, annotation = cls, annotation_of(cls, items[i])
        parts.append(items[i])
        annotations.append(annotation)
        options = options_of(annotation)
        if options and options.union and items[i + 1 : i + 2] and items[i + 1] in options.variants:
            cls, i = options.variants[items[i + 1]], i + 2
        else:
            cls, i = pick_section(annotation, None), i + 1
    return parts, owner, annotations


def _other_variants(parts: Sequence[str], choice: Any) -> str:
    """ "; 'momentum' applies to optim.name=sgd" when other variants of the `choice`
    holding the unknown key `parts` have it."""
    options = options_of(choice)
    if options is None:
        return ""
    having = [tag for tag, cls in options.variants.items() if parts[-1] in cls.model_fields]
    choices = " or ".join(f"{_join([*parts[:-1], options.tag])}={tag}" for tag in having)
    return f"; '{parts[-1]}' applies to {choices}" if having else ""


_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def _number(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def _messages(error: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The problems of one pydantic error, as (dotted key, message)."""
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    value = error.get("input")
    parts, owner, annotations = _walk_loc(error.get("loc", ()))
    annotation = annotations[-1] if parts and len(annotations) == len(parts) else None
    key = _join(parts)
    inner = ctx.get("error")
    if kind == "value_error" and isinstance(inner, Problems):
        keys = [_join([*parts, k] if k else parts) for k, _, _ in inner.problems]
        return [(k, invalid(k, v, r)) for k, (_, v, r) in zip(keys, inner.problems)]
    if kind == "extra_forbidden":
        if owner is None:
            return [(key, f"unknown key '{key}'")]
        choice = annotations[-1] if annotations else None
        return [(key, _unknown_key(owner, parts[:-1], parts[-1]) + _other_variants(parts, choice))]
    if kind == "union_tag_invalid":  # `Choice` fills in a missing tag
        options = options_of(annotation)
        assert options is not None  # a union is a choice
        tag = value.get(options.tag) if isinstance(value, Mapping) else value
        tag_key = f"{key}.{options.tag}"
        accepted = "must be one of: " + ", ".join(options.variants)
        return [(tag_key, invalid(tag_key, tag, accepted))]
    if kind == "literal_error":
        choices = literal_choices(annotation)
        expected = (
            "must be one of: " + ", ".join(map(str, choices)) if choices else "invalid choice"
        )
        return [(key, invalid(key, value, expected))]
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        section = pick_section(annotation, None) or (owner if not parts else None)
        hint = f"; {_valid_keys(section, parts)}" if section is not None else ""
        return [(key, invalid(key, value, "expected a mapping" + hint))]
    if kind in _BOUNDS:
        name, op = _BOUNDS[kind]
        return [(key, invalid(key, value, f"must be {op} {_number(ctx.get(name))}"))]
    if kind == "missing":
        field = owner.model_fields.get(parts[-1]) if owner is not None and parts else None
        hint = f": {field.description}" if field is not None and field.description else ""
        return [(key, f"missing required key '{key}'{hint}")]
    reasons = {
        "int_": "expected an integer",
        "bool_": "expected true or false",
        "string_": "expected a string",
        "float_": "expected a number",
        "finite_number": "expected a finite number",
    }
    for prefix, reason in reasons.items():
        if kind.startswith(prefix):
            return [(key, invalid(key, value, reason))]
    if kind == "value_error" and inner is not None:
        return [(key, invalid(key, value, str(inner)))]
    return [(key, invalid(key, value, str(error.get("msg", "invalid"))))]


def _problems(error: ValidationError) -> list[tuple[str, str]]:
    """Every problem of `error` once, as (dotted key, message)."""
    problems: list[tuple[str, str]] = []
    for item in error.errors():
        for key, message in _messages(item):
            if all(message != m for _, m in problems):
                problems.append((key, message))
    return problems


# --------------------------------------------------------------------------- #
# Overrides
# --------------------------------------------------------------------------- #

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _annotation_at(parts: Sequence[str], data: Any, item: str | None = None) -> Any:
    """The annotation of the dotted key `parts` (None if unknown; validation reports
    unknown keys), reading choices as the variant `data` selects. A key under a value
    is unknown too, or, for the override `item`, a `ConfigError`."""
    cls: type[BaseModel] | None = ExperimentConfig
    annotation: Any = None
    for i, part in enumerate(parts):
        if cls is None or part not in cls.model_fields:
            return None
        annotation = annotation_of(cls, part)
        data = data.get(part) if isinstance(data, Mapping) else None
        if i < len(parts) - 1:
            cls = pick_section(annotation, data)
            if cls is None and item is not None:
                raise ConfigError(
                    f"in override {item!r}: '{_join(parts[: i + 1])}' is a value, not a "
                    f"section, so it has no key '{parts[i + 1]}'"
                )
    return annotation


#: Dotted keys (as tuples) that overrides set: what the user chose on the command line.
Touched = set[tuple[str, ...]]


def _parsed(item: str, data: Any) -> tuple[list[str], Any]:
    """The dotted key (as parts) and the value of the override ``"a.b=value"``: the
    value read as YAML, except that string fields keep the text as typed."""
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(
            f"malformed override {item!r}: expected the form key=value with a dotted key, "
            "e.g. solver.rtol=1e-8 or method=error+stiffness"
        )
    key, raw = (part.strip() for part in item.split("=", 1))
    if not _KEY.match(key):
        raise ConfigError(
            f"malformed override {item!r}: the key {key!r} is not a dotted key; expected "
            "the form key=value, e.g. solver.rtol=1e-8"
        )
    parts = key.split(".")
    text = allows_str(_annotation_at(parts, data, item))
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as exc:
        if not text:
            raise ConfigError(
                f"in override {item!r}: could not parse the value for '{key}' as YAML: {exc}"
            ) from None
        value = raw
    if text and value is not None and not isinstance(value, str):
        value = raw  # e.g. name=2024 stays "2024"
    return parts, value


def _apply_override(data: dict[str, Any], item: str, touched: Touched) -> None:
    """Apply the override `item` to the plain mapping `data`.

    An override that selects another variant of a choice (``optim.name=sgd``,
    ``regularization.error.kind=exponential``, ``task=latent_ode``) keeps the keys of
    the old variant that the new one accepts too (at any depth) and drops the others,
    except those an earlier override set (recorded in `touched`, which this one is
    added to): they are the user's, and validation reports them. Without the choice's
    section in `data`, its default is what the new variant starts from, as if the
    config file spelled out the defaults."""
    parts, value = _parsed(item, data)
    switched = _switched_choice(parts, value, data)
    if switched is not None:
        _seed_default(data, switched)
    old = _variant_at(switched, data) if switched is not None else None
    node: dict[str, Any] = data
    for i, part in enumerate(parts[:-1]):
        child, tag = node.get(part), _tag_field(parts[: i + 1], data)
        if child is None:
            child = node[part] = {}
        elif isinstance(child, str) and tag is not None:
            child = node[part] = {tag: child}  # `adjoint: backsolve` shorthand
        elif not isinstance(child, dict):
            reason = f"expected a mapping, so that '{_join(parts)}' can be set"
            raise ConfigError(invalid(_join(parts[: i + 1]), child, reason))
        node = child
    tag = _tag_field(parts, data)
    if isinstance(value, str) and isinstance(node.get(parts[-1]), dict) and tag is not None:
        node[parts[-1]][tag] = value  # `task=latent_ode` chooses the task's variant
        touched.add((*parts, tag))
    else:
        node[parts[-1]] = value
        touched.add(tuple(parts))
    if switched is not None and old is not None:
        new, chosen = _variant_at(switched, data), _node_at(data, switched)
        if new is not None and new is not old and isinstance(chosen, dict):
            _drop_foreign_keys(chosen, old, new, switched, touched)


def _switched_choice(parts: Sequence[str], value: Any, data: Any) -> tuple[str, ...] | None:
    """The dotted key of the choice whose variant the override `parts=value` selects
    (``optim.name=sgd``: optim; ``task=latent_ode``: task), else None."""
    if len(parts) >= 2 and _tag_field(parts[:-1], data) == parts[-1]:
        return tuple(parts[:-1])
    if isinstance(value, str) and _tag_field(parts, data) is not None:
        return tuple(parts)
    return None


def _node_at(data: Any, parts: Sequence[str]) -> Any:
    for part in parts:
        data = data.get(part) if isinstance(data, Mapping) else None
    return data


def _variant_of(annotation: Any, value: Any) -> type[BaseModel] | None:
    """The section class `value` is read as under `annotation`: for a choice, the
    variant its tag names (the default without one, None for an unknown tag)."""
    options = options_of(annotation)
    return options.pick(value) if options is not None else section_of(annotation)


def _variant_at(parts: Sequence[str], data: Any) -> type[BaseModel] | None:
    """The variant the choice at `parts` holds in `data` (see `_variant_of`)."""
    return _variant_of(_annotation_at(parts, data), _node_at(data, parts))


def _tag_field(parts: Sequence[str], data: Any) -> str | None:
    """The tag field (``name``/``kind``) if the dotted key `parts` holds a choice."""
    options = options_of(_annotation_at(parts, data))
    return options.tag if options is not None else None


def _seed_default(data: dict[str, Any], parts: Sequence[str]) -> None:
    """Where a section on the way to the choice `parts` is missing from `data` (its
    default in effect), write that default out, so that switching the choice's variant
    starts from the same keys as a config file that spells out the defaults."""
    node: Any = data
    cls: type[BaseModel] | None = ExperimentConfig
    for part in parts:
        if cls is None or part not in cls.model_fields or not isinstance(node, dict):
            return
        field = cls.model_fields[part]
        if part not in node:
            default = field.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                node[part] = default.model_dump(mode="json")
            return
        node = node[part]
        cls = pick_section(annotation_of(cls, part), node)


def _set_by_override(key: tuple[str, ...], touched: Touched, *, below: bool = False) -> bool:
    """Whether an override set `key` or a section above it (`below`: or a key under it)."""
    return any(key[: len(t)] == t or (below and t[: len(key)] == key) for t in touched)


def _drop_foreign_keys(
    node: dict[str, Any],
    old: type[BaseModel],
    new: type[BaseModel],
    prefix: tuple[str, ...],
    touched: Touched,
) -> None:
    """Drop from `node` (read as `old` until now, as `new` from now on) the keys that
    `old` accepts and `new` does not: they came with the old variant, not from the
    user. Sections both accept are pruned alike; a choice's variant that `new` does not
    offer goes (its default is chosen), and so does a null `new` does not accept (null
    stood for the old variant's default). Keys an override set stay, and so do keys
    neither variant accepts: validation reports them."""
    for key in list(node):
        where = (*prefix, key)
        if key not in old.model_fields or _set_by_override(where, touched):
            continue
        if key not in new.model_fields:
            if not _set_by_override(where, touched, below=True):
                del node[key]
            continue
        value = node[key]
        old_annotation, new_annotation = annotation_of(old, key), annotation_of(new, key)
        if value is None and type(None) not in members_of(new_annotation):
            del node[key]
            continue
        before = _variant_of(old_annotation, value)
        offered = options_of(new_annotation)
        if offered is not None and before is not None:
            if isinstance(value, str) and value not in offered.variants:
                del node[key]  # `adjoint: backsolve` where the new variant has no backsolve
                continue
            tag = offered.tag
            mine = _set_by_override((*where, tag), touched)
            if (
                not mine
                and isinstance(value, dict)
                and value.get(tag) not in (None, *offered.variants)
            ):
                del value[tag]  # e.g. digits under a latent ODE: its default data set
        after = _variant_of(new_annotation, value)
        if isinstance(value, dict) and before is not None and after is not None:
            _drop_foreign_keys(value, before, after, where, touched)


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #


def config_from_dict(
    data: Mapping[str, Any] | None = None, overrides: Sequence[str] = ()
) -> ExperimentConfig:
    """Validate a plain mapping (as read from YAML) after applying dotted overrides."""
    return _validated(data, overrides, None)


def _validated(data: Any, overrides: Sequence[str], source: str | None) -> ExperimentConfig:
    """`config_from_dict`; the `ConfigError` says which problems come from the config
    file `source` (or the mapping) and which from the overrides, naming those."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        where = "a config" if source is None else f"config file '{source}'"
        raise ConfigError(
            f"the top level of {where} must be a mapping of keys, got "
            f"{type(data).__name__}; " + _valid_keys(ExperimentConfig, ())
        )
    if isinstance(overrides, str):
        overrides = [overrides]
    overrides = list(overrides)
    base = dict(data)
    config, problems = _validate(_merged(base, overrides))
    if config is not None:
        return config
    raise _attributed(problems, base, overrides, source)


def _merged(base: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of `base` with `overrides` applied."""
    merged = copy.deepcopy(base)
    touched: Touched = set()
    for item in overrides:
        _apply_override(merged, item, touched)
    return merged


def _validate(merged: dict[str, Any]) -> tuple[ExperimentConfig | None, list[tuple[str, str]]]:
    try:
        return ExperimentConfig.model_validate(merged), []
    except ValidationError as error:
        return None, _problems(error)


def _states(item: str, key: str) -> bool:
    """Whether the override `item` states the problem at `key` itself: it sets that
    key, a mapping holding it, or, as ``solver.adjoint=backsolve``, the choice whose
    tag it is (the message then shows the key and value the user typed)."""
    own, raw = (part.strip() for part in item.split("=", 1))
    if key == own:
        return True
    if not key.startswith(own + "."):
        return False
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        return False
    return isinstance(value, Mapping) or key[len(own) + 1 :] in ("name", "kind")


def _attributed(
    problems: list[tuple[str, str]],
    base: dict[str, Any],
    overrides: list[str],
    source: str | None,
) -> ConfigError:
    """One `ConfigError` for `problems`, each attributed: to the config file `source`
    where the file alone has a problem at its key, else to the overrides without which
    its key has none (all of them where no one alone makes a difference). Problems are
    told apart by their dotted key, not their text (which may list the keys of another
    variant). A problem with the very key an override set names that key and value
    already and is not attributed."""
    in_file = f"in config file '{source}'" if source is not None else None
    if not overrides:
        return _listing([(in_file, message) for _, message in problems])
    _, alone = _validate(base)
    file_keys = {key for key, _ in alone}
    without: list[set[str] | None] = []  # the keys with problems without each override
    for i in range(len(overrides)):
        try:
            _, rest = _validate(_merged(base, overrides[:i] + overrides[i + 1 :]))
            without.append({key for key, _ in rest})
        except ConfigError:  # e.g. an override that needs an earlier one
            without.append(None)
    attributed: list[tuple[str | None, str]] = []
    for key, message in problems:
        if key in file_keys:
            attributed.append((in_file, message))
            continue
        causes = [
            item for item, rest in zip(overrides, without) if rest is None or key not in rest
        ] or overrides
        if all(_states(item, key) for item in causes):
            attributed.append((None, message))
        else:
            word = "override" if len(causes) == 1 else "overrides"
            attributed.append((f"with the {word} {' '.join(causes)}", message))
    return _listing(attributed)


def _listing(problems: list[tuple[str | None, str]]) -> ConfigError:
    """The `ConfigError` of (where, message) pairs: a `where` all share leads the
    message; otherwise each problem says its own."""
    wheres = {where for where, _ in problems}
    if len(wheres) == 1:
        (where,) = wheres
        error = config_error_of([message for _, message in problems])
        if where is None:
            return error
        return ConfigError(f"{where}: {error}", error.problems)
    return config_error_of(
        [f"{where}: {message}" if where is not None else message for where, message in problems]
    )


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> ExperimentConfig:
    """Load and validate an experiment config.

    ``path=None`` gives the defaults (identical to ``configs/digits.yaml``).
    ``overrides`` are strings ``"a.b=value"``; the value is read as YAML (so ``1e-6``,
    ``true``, ``[1, 2]``, ``null`` work). Raises `ConfigError` for every problem,
    saying which come from the file and which from the overrides.
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
    return _validated(data, overrides, None if path is None else str(path))


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
