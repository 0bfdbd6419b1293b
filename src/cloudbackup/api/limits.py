"""Input limits applied before any handler runs: text the database cannot hold never reaches it.

PostgreSQL refuses NUL characters in text, so an id or query value carrying one would turn into a
500. An id with NUL names nothing (404); a query value or JSON string with NUL is a bad request.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from cloudbackup.domain.errors import InvalidInput, NotFound


def reject_nul_characters(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Litestar guard: 404 for a NUL in a path parameter, 400 for one in a query value."""
    for value in connection.path_params.values():
        if isinstance(value, str) and "\x00" in value:
            raise NotFound("Not found.")
    for key, value in connection.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            raise InvalidInput(
                "Validation failed.", ["Query values may not contain NUL characters."]
            )


def has_escaped_nul(body: bytes) -> bool:
    """True when a JSON document spells a NUL character (``\\u0000``) in some string."""
    return b"\\u0000" in body.lower()
