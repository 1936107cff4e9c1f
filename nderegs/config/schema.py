"""Reading the config schema: which section class or choice of variants a field
holds, so that error messages and overrides can name keys and what they accept."""

from collections.abc import Mapping
import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Tag

from .base import default_tag, Variant


def members_of(annotation: Any) -> list[Any]:
    """Optional/Union/Annotated flattened into their members; a variant of a choice
    (`Annotated[cls, Tag(tag)]`) is kept as the pair `(cls, tag)`."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *meta = typing.get_args(annotation)
        tags = [m.tag for m in meta if isinstance(m, Tag)]
        if tags:
            return [(base, tags[0])]
        return members_of(base)
    if origin is Union or origin is types.UnionType:
        return [m for a in typing.get_args(annotation) for m in members_of(a)]
    return [annotation]


def variants_of(annotation: Any) -> dict[str, type[Variant]] | None:
    """tag -> variant for a choice, else None."""
    pairs = [m for m in members_of(annotation) if isinstance(m, tuple)]
    return {tag: cls for cls, tag in pairs} or None


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
    the tag in `data` selects (the default variant without one)."""
    variants = variants_of(annotation)
    if variants is None:
        return section_of(annotation)
    field = next(iter(variants.values())).tag_field
    tag = data.get(field) if isinstance(data, Mapping) else None
    if isinstance(tag, str) and tag in variants:
        return variants[tag]
    return default_variant(variants)


def default_variant(variants: dict[str, type[Variant]]) -> type[Variant]:
    return variants[default_tag(tuple(variants.values()))]
