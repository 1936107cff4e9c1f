"""What every config section shares: pydantic settings, field types, and `choice`, the
discriminated union of the variants of one choice (solver, optimizer, data set, task...)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Strict, Tag


def _not_a_boolean(value: Any) -> Any:
    # pydantic reads `true` as 1.0 for a float; a tolerance of `true` is a mistake.
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


#: Floats accept numeric strings (YAML 1.1 reads ``1e-6`` as a string) but not booleans.
Float = Annotated[float, BeforeValidator(_not_a_boolean)]
Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]


class ConfigError(ValueError):
    """A configuration problem. ``str(err)`` names the offending dotted key(s) and what
    is accepted; ``err.problems`` lists the individual problems."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems is not None else [message]


def invalid(key: str, value: Any, reason: str) -> str:
    """The message of one problem: ``invalid value for 'key': value (reason)``."""
    return f"invalid value for '{key}': {value!r} ({reason})"


def config_error_of(problems: list[str]) -> ConfigError:
    """One `ConfigError` listing every problem message."""
    if len(problems) == 1:
        return ConfigError(problems[0], problems)
    listing = "\n".join(f"  - {p}" for p in problems)
    return ConfigError(f"{len(problems)} problems in config:\n{listing}", problems)


class Problems(ValueError):
    """Raised by a validator for one or more keys at once, as `(key relative to the
    section that raised, value, reason)` each; the error message names each key."""

    def __init__(self, *problems: tuple[str | None, Any, str]):
        super().__init__("; ".join(reason for _, _, reason in problems))
        self.problems = problems


class Section(BaseModel):
    """A config section: unknown keys are errors, numbers must be finite, and
    assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class Variant(Section):
    """One variant of a choice; its `name` field is the tag that selects it."""

    #: The field that names the variant (``name`` unless a section says otherwise).
    tag_field: ClassVar[str] = "name"


def choice(*variants: type[Variant], default: str) -> Any:
    """The discriminated union of `variants`, selected by their tag field (``name``);
    a mapping without the tag is the `default` variant, so ``solver: {rtol: 1e-8}``
    keeps the default solver."""
    field = variants[0].tag_field

    def tag_of(value: Any) -> str:
        if isinstance(value, dict):
            return value.get(field, default)
        return getattr(value, field, default)

    if len(variants) == 1:
        return variants[0]
    _DEFAULT_TAGS[variants] = default
    members = tuple(Annotated[v, Tag(tag_name(v))] for v in variants)
    return Annotated[Union[members], Discriminator(tag_of)]  # type: ignore[valid-type]


_DEFAULT_TAGS: dict[tuple[type[Variant], ...], str] = {}


def default_tag(variants: tuple[type[Variant], ...]) -> str:
    """The tag a mapping without one selects among `variants` (a `choice`)."""
    return _DEFAULT_TAGS[variants]


def tag_name(variant: type[Variant]) -> str:
    """The tag of a variant: the default of its tag field."""
    return variant.model_fields[variant.tag_field].default
