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

# How long a secret that named no token is answered from memory: a flood of made-up tokens then
# costs one database read each per this many seconds. A real token's secret is random and was
# never asked about before it existed, so this never delays a new token.
UNKNOWN_TTL = 5.0


class TokenCache:
    """Principals of recently seen tokens; a revoked token lives here at most ``ttl`` seconds.
    Secrets that named no token are remembered for :data:`UNKNOWN_TTL` seconds."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._unknown: dict[str, float] = {}
        self._lock = threading.Lock()

    def is_unknown(self, digest: str) -> bool:
        until = self._unknown.get(digest)
        return until is not None and until >= time.monotonic()

    def put_unknown(self, digest: str) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._unknown) > 10_000:
                self._unknown.clear()
            self._unknown[digest] = time.monotonic() + UNKNOWN_TTL

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

    A valid token is cached for the cache's ``ttl``; an unknown, expired or revoked one for
    :data:`UNKNOWN_TTL` seconds.
    """
    if not secret or len(secret) > MAX_SECRET_LENGTH:
        return None  # authenticate() would say so too, after a trip to a worker thread
    digest = hash_token(secret)
    if cache.is_unknown(digest):
        return None
    principal = cache.get(digest)
    if principal is None:

        def read() -> Principal | None:
            with database.read() as session:  # no write lock: a flood of bad tokens holds no one up
                return authenticate(session, secret)

        principal = await anyio.to_thread.run_sync(read)
        if principal is not None:
            cache.put(digest, principal)
        else:
            cache.put_unknown(digest)
    return principal
