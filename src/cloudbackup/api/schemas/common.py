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
    # ``__struct_fields__``, not ``msgspec.structs.fields``: that one resolves the class's type
    # annotations on every call (it was 45% of the instructions of a B1 request).
    copied = {
        name: getattr(row, prefix + name)
        for name in out_type.__struct_fields__
        if name not in computed
    }
    return out_type(**copied, **computed)
