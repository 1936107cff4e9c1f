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
import types
import typing
from typing import Annotated, Any, NamedTuple, Union

from pydantic import BaseModel, ValidationError
import yaml

from .base import Choice, config_error_of, ConfigError, invalid, Problems, Variant
from .experiment import ExperimentConfig

# --------------------------------------------------------------------------- #
# The schema, as overrides and error messages read it
# --------------------------------------------------------------------------- #


class _Variants(NamedTuple):
    """The variants a `Choice` (or `Variant`) field offers: tag -> section, and the
    `default` section a mapping without a tag reads as."""

    tag: str
    classes: dict[str, type[Variant]]
    default: type[Variant]


def _annotation(cls: type[BaseModel], key: str) -> Any:
    # pydantic keeps a field's metadata (a union's `Choice`) apart; this puts it back.
    return cls.model_fields[key].rebuild_annotation()


def _members(annotation: Any) -> list[Any]:
    """Optional/Union/Annotated flattened into their members."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [m for a in typing.get_args(annotation) for m in _members(a)]
    return [annotation]


def _variants(annotation: Any) -> _Variants | None:
    """The variants of a (possibly optional) `Choice` field, or of a `Variant` field (one
    class for all its tags: the solver's table); None for any other field."""
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return next(filter(None, map(_variants, typing.get_args(annotation))), None)
    section, *metadata = typing.get_args(annotation) if origin is Annotated else (annotation,)
    choice = next((m for m in metadata if isinstance(m, Choice)), None)
    if choice is None and metadata:  # e.g. a validator's: what it annotates
        return _variants(section)
    classes = typing.get_args(section) if choice else (section,)
    if not (isinstance(classes[0], type) and issubclass(classes[0], Variant)):
        return None
    tag = classes[0].tag_field
    tags = {t: c for c in classes for t in typing.get_args(c.model_fields[tag].annotation)}
    return _Variants(tag, tags, choice.default if choice else classes[0])


def _section(annotation: Any, value: Any) -> type[BaseModel] | None:
    """The section class `value` reads as under `annotation`: for a choice, the variant
    its tag names (the default without a known one); None for a plain value."""
    variants = _variants(annotation)
    if variants is not None:
        tag = value.get(variants.tag) if isinstance(value, Mapping) else value
        default = variants.default
        return variants.classes.get(tag, default) if isinstance(tag, str) else default
    sections = [m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
    return sections[0] if sections else None


def _tags(annotation: Any) -> tuple[str, tuple[str, ...]] | None:
    """The tag field (``name``/``kind``) of a choice or `Variant` field and the tags it accepts."""
    variants = _variants(annotation)
    return (variants.tag, tuple(variants.classes)) if variants is not None else None


def _tag(annotation: Any) -> str | None:
    tags = _tags(annotation)
    return tags[0] if tags is not None else None


def _valid_keys(cls: type[BaseModel], prefix: Sequence[str]) -> str:
    where = f"under '{'.'.join(prefix)}'" if prefix else "at top level"
    return f"valid keys {where}: {', '.join(cls.model_fields)}"


# --------------------------------------------------------------------------- #
# pydantic's errors
# --------------------------------------------------------------------------- #


def _located(loc: Sequence[Any]) -> tuple[list[str], type[BaseModel] | None, Any]:
    """pydantic's error location followed from the top: the dotted key parts (a union's
    tags dropped), the section holding the last part (None past the schema) and the
    annotation of the last field the schema knows."""
    items, parts = [str(p) for p in loc], []
    cls: type[BaseModel] | None = ExperimentConfig
    owner, annotation, i = cls, None, 0
    while i < len(items):
        if cls is None:  # below a value: list indices kept, pydantic's union members not
            return [*parts, *(p for p in items[i:] if p.isdigit())], None, annotation
        if items[i] not in cls.model_fields:
            return [*parts, *items[i:]], cls if i == len(items) - 1 else None, annotation
        owner, annotation = cls, _annotation(cls, items[i])
        parts.append(items[i])
        variants = _variants(annotation)
        if variants is not None and items[i + 1 : i + 2] and items[i + 1] in variants.classes:
            cls, i = variants.classes[items[i + 1]], i + 2
        else:
            cls, i = _section(annotation, None), i + 1
    return parts, owner, annotation


def _unknown_key(section: type[BaseModel], parts: list[str], annotation: Any) -> str:
    """The message of an unknown key: the valid ones, the closest, and the variants of
    the choice holding it (`annotation`) that have it."""
    key, prefix = parts[-1], parts[:-1]
    message = f"unknown key '{'.'.join(parts)}'; {_valid_keys(section, prefix)}"
    close = difflib.get_close_matches(key, list(section.model_fields), n=1)
    if close:
        message += f" (did you mean '{close[0]}'?)"
    variants = _variants(annotation)
    if variants is not None:
        having = [tag for tag, cls in variants.classes.items() if key in cls.model_fields]
        tag_key = ".".join([*prefix, variants.tag])
        if having:
            message += f"; '{key}' applies to " + " or ".join(f"{tag_key}={t}" for t in having)
    return message


def _messages(error: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The problems of one pydantic error, as (dotted key, message)."""
    kind, value, context = error["type"], error.get("input"), error.get("ctx") or {}
    parts, owner, annotation = _located(error["loc"])
    key = ".".join(parts)
    # The exception a validator raised, where one did.
    inner = next((v for v in context.values() if isinstance(v, Exception)), None)
    if isinstance(inner, Problems):
        keys = [".".join([*parts, k]) for k, _, _ in inner.problems]
        return [(k, invalid(k, v, reason)) for k, (_, v, reason) in zip(keys, inner.problems)]
    if kind == "extra_forbidden":
        message = f"unknown key '{key}'"
        return [(key, _unknown_key(owner, parts, annotation) if owner else message)]
    if kind == "missing":
        field = owner.model_fields.get(parts[-1]) if owner is not None else None
        hint = f": {field.description}" if field is not None and field.description else ""
        return [(key, f"missing required key '{key}'{hint}")]
    if kind == "union_tag_invalid":  # `Choice` fills in a missing tag: a wrong one
        variants = _variants(annotation)
        assert variants is not None
        tag = value.get(variants.tag) if isinstance(value, Mapping) else value  # as written
        key = f"{key}.{variants.tag}"
        return [(key, invalid(key, tag, "must be one of: " + ", ".join(variants.classes)))]
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        section = _section(annotation, None)
        reason = "expected a mapping" + (f"; {_valid_keys(section, parts)}" if section else "")
    else:  # pydantic's own words: "must be greater than 0", "must be a valid integer"
        reason = str(inner) if inner is not None else error["msg"].replace("Input should", "must")
    return [(key, invalid(key, value, reason))]


def _validate(data: dict[str, Any]) -> tuple[ExperimentConfig | None, list[tuple[str, str]]]:
    """The config, or every problem once as (dotted key, message)."""
    try:
        return ExperimentConfig.model_validate(data), []
    except ValidationError as error:
        problems = [p for item in error.errors() for p in _messages(item)]
        return None, list(dict.fromkeys(problems))  # a message names its key


# --------------------------------------------------------------------------- #
# Overrides
# --------------------------------------------------------------------------- #

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
#: What each override set: its dotted key (as parts; a choice's tag for ``task=X``) and
#: its value.
Set = list[tuple[tuple[str, ...], Any]]


def _field(parts: Sequence[str], data: Any, item: str) -> Any:
    """The annotation of the dotted key `parts` (None if unknown: validation reports
    it), reading choices as the variant `data` holds. Going below a value is an error
    of the override `item`."""
    cls: type[BaseModel] | None = ExperimentConfig
    annotation: Any = None
    for i, part in enumerate(parts):
        if cls is None or part not in cls.model_fields:
            if cls is None:
                raise ConfigError(
                    f"in override {item!r}: '{'.'.join(parts[:i])}' is a value, not a "
                    f"section, so it has no key '{part}'"
                )
            return None
        annotation = _annotation(cls, part)
        data = data.get(part) if isinstance(data, Mapping) else None
        cls = _section(annotation, data)
    return annotation


def _parsed(item: str, data: Any) -> tuple[list[str], Any]:
    """The dotted key (as parts) and the value of the override ``"a.b=value"``: the
    value read as YAML, except that string fields keep the text as typed; ``task=X``
    sets the tag of the choice ``task``."""
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
    annotation = _field(parts, data, item)
    members = _members(annotation)
    text = str in members
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as exc:
        if not text:
            raise ConfigError(
                f"in override {item!r}: could not parse the value for '{key}' as YAML: {exc}"
            ) from None
        value = raw
    number = isinstance(value, int | float) and not isinstance(value, bool) and float in members
    if text and value is not None and not isinstance(value, str) and not number:
        value = raw  # e.g. name=2024 stays "2024" (but a number or a path: reference=1.5)
    tag = _tag(annotation)
    return ([*parts, tag], value) if isinstance(value, str) and tag else (parts, value)


def _apply_override(data: dict[str, Any], item: str, done: Set) -> None:
    """Apply the override `item` to the plain mapping `data` (`done`: what the earlier
    ones set, to which this one is added).

    An override that switches the variant of a choice (``optim.name=sgd``,
    ``task=latent_ode``) keeps the keys of the old variant that the new one takes too
    (at any depth) and drops the others, except those an override set: they are the
    user's, and validation reports them. A section missing on the way is written out
    as its default, so that a new variant starts from the keys of a file spelling out
    the defaults."""
    parts, value = _parsed(item, data)
    node, owner, annotation = data, ExperimentConfig, None
    for i, part in enumerate(parts[:-1]):
        child: Any
        field = owner.model_fields.get(part) if owner is not None else None
        annotation = field.rebuild_annotation() if field is not None else None
        child, tag = node.get(part), _tag(annotation)
        if child is None:  # its default, spelled out: a switch starts from its keys
            default = field.get_default(call_default_factory=True) if field else None
            child = default.model_dump(mode="json") if isinstance(default, BaseModel) else {}
        elif isinstance(child, str) and tag is not None:
            child = {tag: child}  # `adjoint: backsolve` shorthand
        elif not isinstance(child, dict):
            reason = f"expected a mapping, so that '{'.'.join(parts)}' can be set"
            raise ConfigError(invalid(".".join(parts[: i + 1]), child, reason))
        node[part] = child
        node, owner = child, _section(annotation, child)
    # Setting the tag of a choice (``optim.name=sgd``) may switch its variant.
    old = _section(annotation, node)
    node[parts[-1]] = value
    done.append((tuple(parts), value))
    new = _section(annotation, node)
    if old is not None and new is not None and new is not old:
        _drop_foreign_keys(node, old, new, tuple(parts[:-1]), {key for key, _ in done})


def _drop_foreign_keys(
    node: dict[str, Any],
    old: type[BaseModel],
    new: type[BaseModel],
    where: tuple[str, ...],
    kept: set[tuple[str, ...]],
) -> None:
    """Drop from `node` (read as `old` until now, as `new` from now on) the keys `old`
    takes and `new` does not, at any depth; a nested choice's variant `new` does not
    offer goes (its default is chosen), and so does a null `new` does not take (it
    stood for the old default). Keys at or above the `kept` ones (set by overrides)
    stay, and keys neither takes: validation reports them."""
    for key in list(node):
        path = (*where, key)
        if key not in old.model_fields or any(path[: len(k)] == k for k in kept):
            continue
        value, annotation = node[key], _annotation(new, key) if key in new.model_fields else None
        tag, offered = _tags(annotation) or (None, ())
        if annotation is None:
            if not any(k[: len(path)] == path for k in kept):
                del node[key]
        elif (value is None and type(None) not in _members(annotation)) or (
            isinstance(value, str) and tag and value not in offered
        ):
            del node[key]
        elif isinstance(value, dict):
            before = _section(_annotation(old, key), value)
            _, had = _tags(_annotation(old, key)) or (None, ())
            if tag and value.get(tag) in had and value.get(tag) not in offered:
                if (*path, tag) not in kept:
                    value.pop(tag, None)  # e.g. digits under a latent ODE: its default
            after = _section(annotation, value)
            if before is not None and after is not None:
                _drop_foreign_keys(value, before, after, path, kept)


def _merged(base: dict[str, Any], overrides: Sequence[str]) -> tuple[dict[str, Any], Set]:
    """A copy of `base` with `overrides` applied, and what each set."""
    merged, done = copy.deepcopy(base), []
    for item in overrides:
        _apply_override(merged, item, done)
    return merged, done


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
    overrides = [overrides] if isinstance(overrides, str) else list(overrides)
    merged, done = _merged(dict(data), overrides)
    config, problems = _validate(merged)
    if config is not None:
        return config
    raise _attributed(problems, dict(data), overrides, done, source)


def _attributed(
    problems: list[tuple[str, str]],
    base: dict[str, Any],
    overrides: list[str],
    done: Set,
    source: str | None,
) -> ConfigError:
    """One `ConfigError` for `problems`, each attributed: to the config file `source`
    where the file alone has a problem at its key, else to the overrides without which
    its key has none (all of them where no one alone makes a difference). A problem at
    a key an override set (or under a mapping it set) shows the user's own key and
    value, and is not attributed."""
    in_file = f"in config file '{source}'" if source is not None else None
    file_keys = {key for key, _ in _validate(base)[1]}
    without: list[set[str] | None] = []  # the keys with problems without each override
    for i in range(len(overrides)):
        try:
            rest = _validate(_merged(base, overrides[:i] + overrides[i + 1 :])[0])[1]
            without.append({key for key, _ in rest})
        except ConfigError:  # e.g. an override that needs an earlier one
            without.append(None)
    listed: list[tuple[str | None, str]] = []
    for key, message in problems:
        # The file's problem, unless an override set that very key (then its value shows).
        own = any(".".join(parts) == key for parts, _ in done)
        if key in file_keys and not own:
            listed.append((in_file, message))
            continue
        causes = [i for i, rest in enumerate(without) if rest is None or key not in rest]
        causes = causes or list(range(len(overrides)))
        stated = [
            key == ".".join(parts)
            or (isinstance(value, Mapping | list) and key.startswith(f"{'.'.join(parts)}."))
            for parts, value in (done[i] for i in causes)
        ]
        word = "override" if len(causes) == 1 else "overrides"
        where = f"with the {word} {' '.join(overrides[i] for i in causes)}"
        listed.append((None if all(stated) else where, message))
    wheres = {where for where, _ in listed}
    if len(wheres) == 1:  # shared: it leads the message
        (where,) = wheres
        error = config_error_of([message for _, message in listed])
        return error if where is None else ConfigError(f"{where}: {error}", error.problems)
    return config_error_of([f"{w}: {m}" if w is not None else m for w, m in listed])


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
