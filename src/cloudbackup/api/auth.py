"""Authentication and RBAC for every route: one guard, applied app-wide (spec §1.3, §1.7).

`X-Auth-Token` is looked up by hash (cached briefly in-process); the token's project must be the
path's project, and the token's roles must grant the permission of the HTTP method. Routes that
need no token say so with ``opt={"public": True}``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio.to_thread
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from cloudbackup.domain.auth import Permission, Principal, authenticate, hash_token
from cloudbackup.domain.errors import Forbidden, NotFound, Unauthenticated
from cloudbackup.store.db import Database

METHOD_PERMISSION = {
    "GET": Permission.READ,
    "HEAD": Permission.READ,
    "POST": Permission.CREATE,
    "PUT": Permission.UPDATE,
    "PATCH": Permission.UPDATE,
    "DELETE": Permission.DELETE,
}


class TokenCache:
    """Principals of recently seen tokens; a revoked token lives here at most ``ttl`` seconds."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, digest: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (time.monotonic() + self.ttl, principal)


async def require_token(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Litestar guard: sets ``connection.state.principal`` or raises 401/403/404."""
    if handler.opt.get("public"):
        return
    secret = connection.headers.get("x-auth-token", "")
    if not secret:
        raise Unauthenticated("Authentication required: send a valid X-Auth-Token header.")
    state = connection.app.state
    cache: TokenCache = state.token_cache
    digest = hash_token(secret)
    principal = cache.get(digest)
    if principal is None:
        db: Database = state.database

        def lookup() -> Principal | None:
            with db.transaction() as session:
                return authenticate(session, secret)

        principal = await anyio.to_thread.run_sync(lookup)
        if principal is None:
            raise Unauthenticated("The X-Auth-Token is invalid, expired or revoked.")
        cache.put(digest, principal)
    project_id = connection.path_params.get("project_id")
    if project_id is not None and project_id != principal.project_id:
        # Another tenant's project: answer as if it did not exist (nothing is disclosed).
        raise NotFound("Not found.")
    method = str(connection.scope.get("method", "GET"))
    permission = handler.opt.get("permission") or METHOD_PERMISSION.get(method, Permission.READ)
    if not principal.may(permission):
        raise Forbidden(
            f"Your role does not allow this operation ({permission} permission required)."
        )
    connection.state.principal = principal
