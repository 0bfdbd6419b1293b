"""`Idempotency-Key` on POST: a retried request gets the first response again, not a second
backup (restore, cleanup, configuration, ...).

An ASGI middleware, so no controller knows about it. Keys are scoped to the token's project, the
method and the path. The first request reserves the key (a row whose primary key is a hash of
that scope, so two concurrent first uses race for one row and one wins); its response is kept
when it is a success (2xx). Then:

* the same key with the same request returns the kept response (``Idempotent-Replayed: true``);
* the same key with a different body (or content type, or ``X-Agent-Id``) is 422;
* the same key while the first request still runs is 409 (retry later);
* a failed first request (4xx/5xx) keeps nothing: it created nothing, so a retry runs anew.

Responses that carry credentials (agent registration A1 and agent tokens A9) are never kept:
their secrets must not be stored in clear, so those routes ignore the header.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import anyio.to_thread
import sqlalchemy as sa
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from cloudbackup.api.auth import METHOD_PERMISSION
from cloudbackup.api.limits import read_body, replay
from cloudbackup.domain.auth import Principal
from cloudbackup.domain.credentials import principal_of
from cloudbackup.domain.errors import Conflict, InvalidInput
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import IdempotencyRepository
from cloudbackup.store.tables import as_utc, utcnow

HEADER = b"idempotency-key"
REPLAYED_HEADER = (b"idempotent-replayed", b"true")
MAX_KEY_LENGTH = 255
# A reservation whose request has not answered after this long belongs to a dead process.
ABANDONED_AFTER = timedelta(seconds=120)
# Path suffixes (after /v2/{project_id}) whose responses hold secrets: never stored.
SECRET_BEARING = frozenset({"/agents", "/agents/tokens"})

MISMATCH = "This Idempotency-Key was already used with a different request."
IN_FLIGHT = "A request with this Idempotency-Key is still being processed; retry it shortly."
BAD_KEY = f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters."


@dataclass(frozen=True, slots=True)
class Stored:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


Outcome = tuple[Literal["reserved"], datetime] | tuple[Literal["replay"], Stored]


def idempotency_middleware(app: ASGIApp) -> ASGIApp:
    """Litestar middleware factory (``Litestar(middleware=[...])``)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        raw_key = _header(scope, HEADER)
        if raw_key is None or _suffix(scope) in SECRET_BEARING:
            await app(scope, receive, send)
            return
        principal = await _principal(scope)
        if principal is None:
            await app(scope, receive, send)  # the auth guard answers 401/403/404
            return
        key = _valid_key(raw_key)
        body = await read_body(receive)
        state = scope["app"].state
        db: Database = state.database
        settings: Settings = state.settings
        key_id = _scope_hash(principal, scope["path"], key)
        fingerprint = _fingerprint(scope, body)
        outcome = await anyio.to_thread.run_sync(
            _reserve, db, key_id, principal.project_id, fingerprint, settings
        )
        if outcome[0] == "replay":
            await _send_stored(send, outcome[1])
            return
        await _run_and_keep(app, scope, replay(body, receive), send, db, key_id, outcome[1])

    return middleware


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value)
    return None


def _suffix(scope: Scope) -> str:
    project_id = scope.get("path_params", {}).get("project_id")
    path: str = scope["path"].rstrip("/")
    prefix = f"/v2/{project_id}"
    return path[len(prefix) :] if project_id is not None and path.startswith(prefix) else path


def _valid_key(raw: bytes) -> str:
    if not 1 <= len(raw) <= MAX_KEY_LENGTH or any(b < 0x20 or b > 0x7E for b in raw):
        raise InvalidInput("Validation failed.", [BAD_KEY])
    return raw.decode("ascii")


async def _principal(scope: Scope) -> Principal | None:
    """The caller if its token is valid, of the path's project, and may create; else None."""
    handler = scope.get("route_handler")
    if handler is None or handler.opt.get("public"):
        return None
    secret_raw = _header(scope, b"x-auth-token")
    if not secret_raw:
        return None
    secret = secret_raw.decode("latin-1")
    state = scope["app"].state
    principal = await principal_of(secret, state.database, state.token_cache)
    if principal is None:
        return None
    if scope.get("path_params", {}).get("project_id") != principal.project_id:
        return None
    permission = handler.opt.get("permission") or METHOD_PERMISSION["POST"]
    return principal if principal.may(permission) else None


def _scope_hash(principal: Principal, path: str, key: str) -> str:
    """A key names one request of one caller: its project, its agent (across an agent's token
    renewals) or else its token, and the path. Another caller's equal key is another key."""
    caller = f"agent:{principal.agent_id}" if principal.agent_id else f"token:{principal.token_id}"
    parts = (principal.project_id, caller, "POST", path.rstrip("/"), key)
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _fingerprint(scope: Scope, body: bytes) -> str:
    digest = hashlib.sha256()
    for name in (b"content-type", b"x-agent-id"):
        digest.update((_header(scope, name) or b"") + b"\x00")
    digest.update(body)
    return digest.hexdigest()


def _reserve(
    db: Database, key_id: str, project_id: str, fingerprint: str, settings: Settings
) -> Outcome:
    """Reserve the key for this request, or say why not (replay, 409, 422)."""
    for _ in range(3):  # an insert race or a take-over race is decided on the next look
        now = utcnow()
        try:
            with db.transaction() as session:
                repo = IdempotencyRepository(session)
                row = repo.get(key_id)
                if row is None:
                    repo.insert(key_id, project_id, fingerprint, now)
                    return ("reserved", now)
                created = as_utc(row.created_at)
                expired = created < now - timedelta(seconds=settings.idempotency_ttl_seconds)
                abandoned = row.status is None and created < now - ABANDONED_AFTER
                if expired or abandoned:
                    if repo.take_over(key_id, row.created_at, fingerprint, now):
                        return ("reserved", now)
                    continue
                if row.fingerprint != fingerprint:
                    # 422, as the IETF Idempotency-Key draft says for a reused key.
                    raise HTTPException(status_code=422, detail=MISMATCH)
                if row.status is None:
                    raise Conflict(IN_FLIGHT)
                headers = [
                    (str(k).encode("latin-1"), str(v).encode("latin-1")) for k, v in row.headers
                ]
                return ("replay", Stored(row.status, headers, bytes(row.body)))
        except sa.exc.IntegrityError:
            continue
    raise Conflict(IN_FLIGHT)


async def _send_stored(send: Send, stored: Stored) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": stored.status,
            "headers": [*stored.headers, REPLAYED_HEADER],
        }
    )
    await send({"type": "http.response.body", "body": stored.body, "more_body": False})


async def _run_and_keep(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    db: Database,
    key_id: str,
    token: datetime,
) -> None:
    """Run the request, passing its response through, then keep it (2xx) or free the key."""
    status = 0
    headers: list[list[str]] = []
    chunks: list[bytes] = []

    async def capture(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers = [
                [bytes(k).decode("latin-1"), bytes(v).decode("latin-1")]
                for k, v in message.get("headers", [])
            ]
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
        await send(message)

    kept = False
    try:
        await app(scope, receive, capture)
        if 200 <= status < 300:
            body = b"".join(chunks)
            await anyio.to_thread.run_sync(_complete, db, key_id, token, status, headers, body)
            kept = True
    finally:
        if not kept:
            await anyio.to_thread.run_sync(_release, db, key_id, token)


def _complete(
    db: Database, key_id: str, token: datetime, status: int, headers: list[Any], body: bytes
) -> None:
    with db.transaction() as session:
        IdempotencyRepository(session).complete(key_id, token, status, headers, body)


def _release(db: Database, key_id: str, token: datetime) -> None:
    with db.transaction() as session:
        IdempotencyRepository(session).release(key_id, token)
