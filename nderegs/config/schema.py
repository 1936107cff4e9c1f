"""Reading the config schema: which section class or choice of variants a field
holds, so that error messages and overrides can name keys and what they accept."""

from collections.abc import Mapping
import types
import typing
from typing import Annotated, Any, Literal, NamedTuple, Union

from pydantic import BaseModel

from .base import Choice, Variant


def annotation_of(cls: type[BaseModel], key: str) -> Any:
    """The annotation of the field `key` of `cls` with its metadata, which pydantic keeps
    apart in the field's `metadata` (a union's `Choice` among it)."""
    return cls.model_fields[key].rebuild_annotation()


def members_of(annotation: Any) -> list[Any]:
    """Optional/Union/Annotated flattened into their members."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return members_of(typing.get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [m for a in typing.get_args(annotation) for m in members_of(a)]
    return [annotation]


class Options(NamedTuple):
    """The variants a field offers: tag -> section class, selected by the `tag` field,
    `default` without it."""

    tag: str
    variants: dict[str, type[Variant]]
    default: str

    def pick(self, value: Any) -> type[Variant] | None:
        """The variant `value` (a mapping, or a tag as in ``adjoint: backsolve``) selects:
        the default without a tag, None for a tag no variant has."""
        tag = value.get(self.tag) if isinstance(value, Mapping) else value
        tag = self.default if tag is None else tag
        return self.variants.get(tag) if isinstance(tag, str) else None

    @property
    def union(self) -> bool:
        """Whether pydantic names the variant in an error's location (a union)."""
        return len(set(self.variants.values())) > 1


def options_of(annotation: Any) -> Options | None:
    """The options of a field: the variants of a `Choice`, or the tags of one `Variant`
    class (e.g. every solver of the solver's table); None for anything else."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *meta = typing.get_args(annotation)
        choice = next((m for m in meta if isinstance(m, Choice)), None)
        if choice is None:
            return options_of(base)
        classes: tuple[type[Variant], ...] = typing.get_args(base)
        variants = {cls.model_fields[cls.tag_field].default: cls for cls in classes}
        return Options(classes[0].tag_field, variants, choice.default)
    if origin is Union or origin is types.UnionType:
        found = [o for o in map(options_of, typing.get_args(annotation)) if o is not None]
        if not found:
            return None
        # An optional choice (`Choice | None`).
        variants = {tag: cls for o in found for tag, cls in o.variants.items()}
        return Options(found[0].tag, variants, found[0].default)
    if isinstance(annotation, type) and issubclass(annotation, Variant):
        field = annotation.model_fields[annotation.tag_field]
        tags = literal_choices(field.annotation) or ()
        return Options(annotation.tag_field, dict.fromkeys(tags, annotation), field.default)
    return None


def section_of(annotation: Any) -> type[BaseModel] | None:
    for member in members_of(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def literal_choices(annotation: Any) -> tuple[Any, ...] | None:
    for member in members_of(annotation):
        if typing.get_origin(member) is Literal:
            return typing.get_args(member)
    return None


def allows_str(annotation: Any) -> bool:
    return any(m is str for m in members_of(annotation))


def pick_section(annotation: Any, data: Any) -> type[BaseModel] | None:
    """The section class a value of `annotation` is read as: for a choice, the variant
    the tag in `data` selects (the default variant without one or for an unknown tag)."""
    options = options_of(annotation)
    if options is None:
        return section_of(annotation)
    return options.pick(data) or options.variants[options.default]
