"""The one lookup of an API token: secret -> principal, through a short-lived in-process cache.

The API's guard, the Idempotency-Key middleware and the console's cookie all call
`principal_of`, so a token is good, expired or revoked for all three at the same moment (give or
take the cache's ``ttl``).
"""

from __future__ import annotations

import threading
import time

import anyio.to_thread

from cloudbackup.domain.auth import MAX_SECRET_LENGTH, Principal, authenticate, hash_token
from cloudbackup.store.db import Database


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


async def principal_of(secret: str, database: Database, cache: TokenCache) -> Principal | None:
    """The caller behind ``secret``, or None when it is missing, unknown, expired or revoked.

    Only valid tokens are cached: a bad one is asked about again (it may have just been made).
    """
    if not secret or len(secret) > MAX_SECRET_LENGTH:
        return None  # authenticate() would say so too, after a trip to a worker thread
    digest = hash_token(secret)
    principal = cache.get(digest)
    if principal is None:

        def read() -> Principal | None:
            with database.transaction() as session:
                return authenticate(session, secret)

        principal = await anyio.to_thread.run_sync(read)
        if principal is not None:
            cache.put(digest, principal)
    return principal
