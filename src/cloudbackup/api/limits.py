"""Input limits applied before any handler runs: nothing oversized, too deep or unstorable
reaches a handler or the database.

* Headers: at most ``MAX_HEADER_BYTES`` in all (431).
* Bodies: at most ``MAX_BODY_BYTES`` (413), checked on ``Content-Length`` before reading and
  while reading a streamed body.
* JSON bodies must be UTF-8 and may nest at most ``MAX_JSON_DEPTH`` levels (400): msgspec gives
  up on deep input with a ``RecursionError`` and on bad UTF-8 with a ``UnicodeDecodeError``,
  which would otherwise surface as 500s.
* NUL characters: PostgreSQL refuses them in text, so an id or query value carrying one would turn
  into a 500. An id with NUL names nothing (404); a query value or JSON string with NUL is a bad
  request.
* Query parameters an operation does not take are refused (400), as unknown body fields are:
  a misspelt filter must not silently return everything.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import BodyKwarg, DependencyKwarg, ParameterKwarg, PathParameter
from litestar.types import ASGIApp, HTTPRequestEvent, Receive, ReceiveMessage, Scope, Send
from litestar.typing import FieldDefinition

from cloudbackup.domain.errors import InvalidInput, NotFound
from cloudbackup.domain.vault_objects import MAX_OBJECT_BYTES

MAX_BODY_BYTES = 2 * 1024 * 1024  # the agent document is capped at 1 MB (spec §1.8)
MAX_HEADER_BYTES = 16 * 1024  # what uvicorn's h11 parser accepts by default
MAX_JSON_DEPTH = 32  # our deepest document (an error report in a JSON Patch) nests 5 levels
# A remote agent's vault objects (packs) are larger; their route sets the same limit.
MAX_OBJECT_BODY_BYTES = MAX_OBJECT_BYTES
_VAULT_OBJECT_PATH = re.compile(r"/v2/[^/]+/agents/[^/]+/vault/objects/")

TOO_LARGE = f"The request body may be at most {MAX_BODY_BYTES:,} bytes."
HEADERS_TOO_LARGE = f"The request headers may be at most {MAX_HEADER_BYTES:,} bytes in all."
TOO_DEEP = f"The JSON document nests deeper than {MAX_JSON_DEPTH} levels."
NOT_UTF8 = "The JSON document is not valid UTF-8."

_JSON_TOKENS = re.compile(rb'[\[\]{}"\\]')
_TOKEN_BYTES = frozenset({b"[", b"]", b"{", b"}", b'"', b"\\"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Handler parameters Litestar fills from the connection itself, never from the query string.
_RESERVED = frozenset(
    {"request", "state", "scope", "headers", "cookies", "query", "body", "data", "socket"}
)
# Per handler object (ids are reused once an app is gone, so they cannot be the key).
_QUERY_NAMES: weakref.WeakKeyDictionary[BaseRouteHandler, frozenset[str]] = (
    weakref.WeakKeyDictionary()
)


# The guards are `async def` though they never wait: Litestar runs a sync guard in a thread.
async def reject_nul_characters(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Litestar guard: 404 for a NUL in a path parameter, 400 for one in a query value."""
    for value in connection.path_params.values():
        if isinstance(value, str) and "\x00" in value:
            raise NotFound("Not found.")
    if not connection.scope["query_string"]:
        return
    for key, value in connection.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            raise InvalidInput(
                "Validation failed.", ["Query values may not contain NUL characters."]
            )


async def reject_unknown_query(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Litestar guard for the v2 API: 400 for a query parameter the operation does not take,
    or one given more than once."""
    if not connection.scope["query_string"] or not connection.scope["path"].startswith("/v2/"):
        return
    known = _QUERY_NAMES.get(handler)
    if known is None:
        known = query_names(handler) - set(connection.path_params)
        _QUERY_NAMES[handler] = known
    unknown = sorted({key for key in connection.query_params if key not in known})
    repeated = sorted(
        {key for key, values in connection.query_params.dict().items() if len(values) > 1}
    )
    if repeated and not unknown:
        # Every query parameter of the API takes one value: which one would be meant?
        raise InvalidInput(
            "Validation failed.",
            [f"Query parameter {name!r} is given more than once." for name in repeated],
        )
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise InvalidInput(
            "Validation failed.",
            [
                f"Unknown query parameter {name!r}; this operation takes: {takes}."
                for name in unknown
            ],
        )


def query_names(handler: BaseRouteHandler) -> frozenset[str]:
    """The query parameters a handler reads (by their names in the URL), its dependencies'
    included (``api.paging.PAGING``)."""
    dependencies = handler.resolve_dependencies()
    return _query_names(handler.parsed_fn_signature.parameters, dependencies)


def _query_names(
    parameters: dict[str, FieldDefinition], dependencies: dict[str, Provide]
) -> frozenset[str]:
    names: set[str] = set()
    for name, field in parameters.items():
        kwarg = field.kwarg_definition
        if (provider := dependencies.get(name)) is not None:
            names |= _query_names(provider.parsed_fn_signature.parameters, dependencies)
            continue
        if isinstance(kwarg, BodyKwarg | DependencyKwarg):
            continue
        if kwarg is None:
            if name not in _RESERVED:
                names.add(name)  # a plain parameter: Litestar looks for it in the query
        elif (
            isinstance(kwarg, ParameterKwarg)
            and not isinstance(kwarg, PathParameter)
            and not (kwarg.header or kwarg.cookie)
        ):
            # QueryParameter(name=...) renames a query parameter (the older spelling: query=...).
            names.add(getattr(kwarg, "name", None) or kwarg.query or name)
    return frozenset(names)


def has_escaped_nul(body: bytes) -> bool:
    """True when a JSON document spells a NUL character (``\\u0000``) in some string."""
    return b"\\u0000" in body.lower()


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``body`` opens more than ``limit`` arrays/objects inside each other.

    Only brackets outside strings count. Bodies with few brackets (nearly all) are answered
    without a scan; the scan visits only brackets, quotes and backslashes.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for match in _JSON_TOKENS.finditer(body):
        token = match.group()
        if in_string:
            if escaped:
                escaped = False
            elif token == b"\\":
                # An escape binds the next byte: skip it when it is one this scan looks at.
                escaped = body[match.end() : match.end() + 1] in _TOKEN_BYTES
            elif token == b'"':
                in_string = False
            continue
        if token == b'"':
            in_string = True
        elif token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


async def read_body(receive: Receive, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole request body; 413 as soon as it grows past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; the handler will see an empty or partial body
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            raise HTTPException(status_code=413, detail=TOO_LARGE)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the already-read body to the app, then waits on the client."""
    sent = False

    async def receive_again() -> ReceiveMessage:
        nonlocal sent
        if not sent:
            sent = True
            message: HTTPRequestEvent = {"type": "http.request", "body": body, "more_body": False}
            return message
        return await receive()

    return receive_again


def _checked_content_type(
    headers: Iterable[tuple[bytes, bytes]], limit: int = MAX_BODY_BYTES
) -> bytes:
    """The request's Content-Type, after refusing a Content-Length that is not a number or is
    over ``limit`` (before a byte of the body is read)."""
    content_type = b""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length":
            if not value.isdigit():
                raise HTTPException(status_code=400, detail="Content-Length is not a number.")
            if int(value) > limit:
                raise HTTPException(status_code=413, detail=TOO_LARGE)
        elif lowered == b"content-type":
            content_type = value.lower()
    return content_type


def limits_middleware(app: ASGIApp) -> ASGIApp:
    """Litestar middleware factory: header size, body size and JSON depth, for every route."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        headers = scope["headers"]
        if sum(len(name) + len(value) for name, value in headers) > MAX_HEADER_BYTES:
            raise HTTPException(status_code=431, detail=HEADERS_TOO_LARGE)
        if scope["method"] not in _BODY_METHODS:
            await app(scope, receive, send)
            return
        path = scope["path"]
        limit = MAX_OBJECT_BODY_BYTES if _VAULT_OBJECT_PATH.match(path) else MAX_BODY_BYTES
        content_type = _checked_content_type(headers, limit)
        if b"json" not in content_type:
            await app(scope, receive, send)
            return
        body = await read_body(receive)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("Malformed JSON.", [NOT_UTF8]) from None
        if json_too_deep(body):
            raise InvalidInput("Malformed JSON.", [TOO_DEEP])
        await app(scope, replay(body, receive), send)

    return middleware
