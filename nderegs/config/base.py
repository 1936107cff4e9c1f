"""What every config section shares: pydantic settings, field types, and `Choice`, which
makes a union of variants (optimizer, data set, task...) a discriminated union."""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
import typing
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, GetCoreSchemaHandler, Strict
from pydantic_core import core_schema


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

    def __init__(self, *problems: tuple[str, Any, str]):
        super().__init__("; ".join(reason for _, _, reason in problems))
        self.problems = problems


class Section(BaseModel):
    """A config section: unknown keys are errors, numbers must be finite, and
    assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class Variant(Section):
    """A section selected by its tag field (``name``), a `Literal`: one class per
    variant, chosen among by `Choice`, or one class for a table of them (the solver's)."""

    tag_field: ClassVar[str] = "name"


@dataclasses.dataclass(frozen=True)
class Choice:
    """Makes the union of variants it annotates a discriminated union on their tag field;
    a mapping without the tag is the `default` variant, so ``optim: {lr: 0.1}`` keeps
    Adam: ``Annotated[Adam | SGD, Choice(default=Adam)]``."""

    default: type[Variant]

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        tag = typing.get_args(source)[0].tag_field
        default = self.default.model_fields[tag].default
        # The discriminated union, as pydantic's own `Discriminator` builds it.
        union = handler(Annotated[source, Field(discriminator=tag)])

        def with_tag(value: Any) -> Any:
            return {tag: default, **value} if isinstance(value, Mapping) else value

        return core_schema.no_info_before_validator_function(with_tag, union)
