"""Shapes shared by many resources: links, references, list envelopes, JSON Patch, errors."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

S = TypeVar("S", bound=msgspec.Struct)


class Link(msgspec.Struct):
    href: str
    rel: str


class Ref(msgspec.Struct):
    """Reference object (spec §2.1)."""

    id: str
    links: list[Link]


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """Every error answer (spec §1.5): a message, plus one string per problem when validating."""

    message: str
    errors: list[str] = msgspec.field(default_factory=list)


class PatchOperation(msgspec.Struct, forbid_unknown_fields=True):
    """One RFC 6902 operation (spec §2.6). ``value`` is checked per path by each resource."""

    op: str
    path: str
    value: Any = msgspec.UNSET


def from_row(out_type: type[S], row: object, prefix: str = "", /, **computed: Any) -> S:
    """An ``out_type`` whose members are ``computed``, the others copied as they are from the
    attributes of ``row`` with the same names after ``prefix`` (most members of a resource are
    its row's)."""
    copied = {
        field.name: getattr(row, prefix + field.name)
        for field in msgspec.structs.fields(out_type)
        if field.name not in computed
    }
    return out_type(**copied, **computed)
