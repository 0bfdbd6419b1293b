"""`principal_of`: the one token lookup behind the API guard, Idempotency-Key and the console."""

from __future__ import annotations

from datetime import timedelta

import anyio

from cloudbackup.domain.auth import Principal, create_token, revoke_token
from cloudbackup.domain.credentials import TokenCache, principal_of
from cloudbackup.store.db import Database


def _token(db: Database, ttl: timedelta | None = None) -> tuple[str, str]:
    with db.transaction() as session:
        secret, row = create_token(session, "p1", ["creator"], ttl=ttl)
        return secret, row.id


def _lookup(db: Database, cache: TokenCache, secret: str) -> Principal | None:
    return anyio.run(principal_of, secret, db, cache)


def test_a_good_token_is_its_principal(db: Database) -> None:
    secret, token_id = _token(db)
    principal = _lookup(db, TokenCache(0), secret)
    assert principal is not None
    assert (principal.token_id, principal.project_id) == (token_id, "p1")
    assert principal.roles == ("cloudbackup:creator",)


def test_missing_unknown_and_overlong_tokens_are_nobody(db: Database) -> None:
    cache = TokenCache(10)
    assert _lookup(db, cache, "") is None
    assert _lookup(db, cache, "0" * 32) is None
    assert _lookup(db, cache, "0" * 257) is None


def test_expired_and_revoked_tokens_are_nobody(db: Database) -> None:
    expired, _ = _token(db, ttl=timedelta(seconds=-1))
    assert _lookup(db, TokenCache(0), expired) is None
    secret, token_id = _token(db)
    with db.transaction() as session:
        assert revoke_token(session, token_id)
    assert _lookup(db, TokenCache(0), secret) is None


def test_a_revoked_token_is_still_cached_for_at_most_the_ttl(db: Database) -> None:
    secret, token_id = _token(db)
    cache = TokenCache(60)
    assert _lookup(db, cache, secret) is not None
    with db.transaction() as session:
        revoke_token(session, token_id)
    assert _lookup(db, cache, secret) is not None  # the cache's answer, for up to 60 s
    assert _lookup(db, TokenCache(0), secret) is None


def test_an_unknown_secret_is_answered_from_memory_for_a_few_seconds(db: Database, monkeypatch):
    from cloudbackup.domain import credentials
    from cloudbackup.domain.auth import hash_token
    from cloudbackup.store.tables import ApiToken

    secret = "f" * 32
    cache = TokenCache(10)
    assert _lookup(db, cache, secret) is None
    with db.transaction() as session:  # the same secret now names a token (a forged race)
        session.add(ApiToken(id="t-1", token_hash=hash_token(secret), project_id="p1", roles=""))
    assert _lookup(db, cache, secret) is None  # no second database read for a while
    clock = credentials.time.monotonic() + credentials.UNKNOWN_TTL + 1
    monkeypatch.setattr(credentials.time, "monotonic", lambda: clock)
    assert _lookup(db, cache, secret) is not None  # then asked again
