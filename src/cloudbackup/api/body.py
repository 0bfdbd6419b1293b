"""Request bodies and query values: strict decoding that turns every mistake into a 400."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request

from cloudbackup.api.limits import has_escaped_nul
from cloudbackup.api.schemas.common import PatchOperation
from cloudbackup.domain.errors import InvalidInput

T = TypeVar("T")

JSON = "application/json"
JSON_PATCH = "application/json-patch+json"
MAX_LIMIT = 100


def _media_type(request: Request[Any, Any, Any]) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def decode_json(
    request: Request[Any, Any, Any], body: bytes, type_: type[T], media_type: str = JSON
) -> T:
    """Decode ``body`` into ``type_``; wrong content type, bad JSON or bad fields are 400s."""
    got = _media_type(request)
    if got != media_type:
        raise InvalidInput(
            f"Content-Type must be {media_type}.",
            [f"Got {got or 'no Content-Type'}; send the body as {media_type}."],
        )
    if has_escaped_nul(body):
        raise InvalidInput("Validation failed.", ["Strings may not contain NUL characters."])
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise InvalidInput("Validation failed.", [str(exc)]) from exc
    except msgspec.DecodeError as exc:
        raise InvalidInput("Malformed JSON.", [str(exc)]) from exc


def decode_object(
    request: Request[Any, Any, Any], body: bytes, type_: type[T], required: dict[str, str]
) -> T:
    """A JSON object body: every missing top-level key named at once, then strict types."""
    data = decode_json(request, body, dict[str, Any])
    missing = [message for key, message in required.items() if key not in data]
    if missing:
        raise InvalidInput("Validation failed.", missing)
    try:
        return msgspec.convert(data, type_, strict=True)
    except msgspec.ValidationError as exc:
        raise InvalidInput("Validation failed.", [str(exc)]) from exc


def decode_patch(
    request: Request[Any, Any, Any], body: bytes, ops: frozenset[str]
) -> list[PatchOperation]:
    """A JSON Patch array (spec §2.6) whose ``op`` values are all in ``ops``."""
    operations = decode_json(request, body, list[PatchOperation], JSON_PATCH)
    if not operations:
        raise InvalidInput("Validation failed.", ["The JSON Patch array is empty."])
    problems = [
        f"op {o.op!r} at {o.path!r} is not supported; use {' or '.join(sorted(ops))}."
        for o in operations
        if o.op not in ops
    ]
    problems += [f"op at {o.path!r} has no value." for o in operations if o.value is msgspec.UNSET]
    if problems:
        raise InvalidInput("Validation failed.", problems)
    return operations


def convert_value(value: Any, type_: type[T], path: str) -> T:
    """Check one patch value against the type its path expects (no coercion, OQ-1)."""
    try:
        return msgspec.convert(value, type_, strict=True)
    except msgspec.ValidationError as exc:
        raise InvalidInput("Validation failed.", [f"{path}: {exc}"]) from exc


def page_limit(value: str | None) -> int:
    if value is None:
        return MAX_LIMIT
    # ASCII only: "²".isdigit() is true, but int("²") fails.
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidInput(
            "Validation failed.", [f"limit must be an integer from 1 to {MAX_LIMIT}."]
        )
    return int(value)


def sort_direction(value: str | None, default: str) -> str:
    if value is None:
        return default
    if value not in ("asc", "desc"):
        raise InvalidInput("Validation failed.", ["sort_dir must be 'asc' or 'desc'."])
    return value


def boolean(name: str, value: str | None) -> bool | None:
    if value is None:
        return None
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise InvalidInput("Validation failed.", [f"{name} must be true or false."])
