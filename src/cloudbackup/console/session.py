"""Who is using the console: a server-side session behind the cookie, and its CSRF token.

The cookie holds a random session secret, never the API token: the database keeps the secret's
SHA-256 and the user's API token sealed (AES-GCM) under a key derived from that secret, so
neither the cookie alone nor the database alone yields the token, and the cookie is no
``X-Auth-Token``. Logout ends the session and drops the sealed token. The cookie is ``HttpOnly``
(scripts cannot read it), ``Secure`` (browsers send it only over HTTPS, or to localhost) and
``SameSite=Strict`` (no other site's page makes the browser send it). Every console form carries
``HMAC-SHA256(session secret, "csrf")``: a page of another origin cannot know it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from litestar import Request
from litestar.datastructures import Cookie

from cloudbackup.domain.auth import Permission, Principal
from cloudbackup.domain.credentials import principal_of
from cloudbackup.store.console_sessions import (
    end_console_session,
    live_console_session,
    open_console_session,
)
from cloudbackup.store.db import Database
from cloudbackup.store.tables import utcnow

COOKIE = "cloudbackup_console"
COOKIE_PATH = "/console"
SESSION_SECONDS = 8 * 3600  # a console session; the API token's own expiry still applies
COOKIE_MAX_AGE = SESSION_SECONDS
# The session cookie goes over HTTPS only, is hidden from scripts and is not sent with requests
# other sites start.
COOKIE_FLAGS: dict[str, Any] = {"httponly": True, "secure": True, "samesite": "strict"}
CSRF_FIELD = "csrf_token"
NONCE_BYTES = 12


def session_cookie(secret: str) -> Cookie:
    """The cookie that carries the console session ``secret``."""
    return Cookie(
        key=COOKIE, value=secret, path=COOKIE_PATH, max_age=COOKIE_MAX_AGE, **COOKIE_FLAGS
    )


class NotLoggedIn(Exception):
    """No cookie, or its token is no longer valid: the page sends the user to the login form."""


class CrossSiteRequest(Exception):
    """A form post without the page's CSRF token, or from another origin."""


@dataclass(frozen=True, slots=True)
class Can:
    """Attributes, not a dict: in a template ``can.update`` would find ``dict.update``."""

    create: bool = False
    update: bool = False
    delete: bool = False


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    secret: str  # the user's API token: the console calls the API in-process with it
    principal: Principal
    session_secret: str  # the cookie's value

    @property
    def project_id(self) -> str:
        return self.principal.project_id

    @property
    def csrf(self) -> str:
        return csrf_token(self.session_secret)

    @property
    def can(self) -> Can:
        """What the buttons may offer (the API enforces the same roles on every call)."""
        may = self.principal.may
        return Can(
            create=may(Permission.CREATE),
            update=may(Permission.UPDATE),
            delete=may(Permission.DELETE),
        )


def csrf_token(secret: str) -> str:
    return hmac.new(secret.encode(), b"cloudbackup-console-csrf", hashlib.sha256).hexdigest()


async def lookup(request: Request[Any, Any, Any], secret: str) -> Principal | None:
    """The principal of a token, through the API's own lookup (same rules, cache and expiry)."""
    state = request.app.state
    return await principal_of(secret, state.database, state.token_cache)


def _hash(session_secret: str) -> str:
    return hashlib.sha256(session_secret.encode()).hexdigest()


def _sealing_key(session_secret: str) -> bytes:
    """AES-256 key of the sealed token: derived from the secret, unlike the stored hash."""
    return hmac.new(session_secret.encode(), b"cloudbackup-console-seal", hashlib.sha256).digest()


def _seal(session_secret: str, token: str) -> str:
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(_sealing_key(session_secret)).encrypt(nonce, token.encode(), None)
    return base64.b64encode(nonce + sealed).decode()


def _unseal(session_secret: str, sealed: str) -> str | None:
    raw = base64.b64decode(sealed)
    try:
        token = AESGCM(_sealing_key(session_secret)).decrypt(
            raw[:NONCE_BYTES], raw[NONCE_BYTES:], None
        )
    except InvalidTag:
        return None
    return token.decode()


async def start_session(request: Request[Any, Any, Any], token: str, principal: Principal) -> str:
    """Open a console session for a checked API token; returns the cookie's secret."""
    session_secret = secrets.token_urlsafe(32)
    db: Database = request.app.state.database
    expires_at = utcnow() + timedelta(seconds=SESSION_SECONDS)
    await anyio.to_thread.run_sync(
        lambda: open_console_session(
            db,
            secret_hash=_hash(session_secret),
            token_id=principal.token_id,
            sealed_token=_seal(session_secret, token),
            expires_at=expires_at,
        )
    )
    return session_secret


async def end_session(request: Request[Any, Any, Any], user: ConsoleUser) -> None:
    db: Database = request.app.state.database
    await anyio.to_thread.run_sync(end_console_session, db, _hash(user.session_secret))


async def session_user(request: Request[Any, Any, Any]) -> ConsoleUser | None:
    """The user of the cookie's live session, with a still valid API token; else None."""
    session_secret = request.cookies.get(COOKIE, "")
    if not session_secret or len(session_secret) > 100:
        return None
    db: Database = request.app.state.database
    found = await anyio.to_thread.run_sync(live_console_session, db, _hash(session_secret))
    token = None if found is None else _unseal(session_secret, found[1])
    principal = None if token is None else await lookup(request, token)
    if token is None or principal is None:
        return None
    return ConsoleUser(token, principal, session_secret)


async def current_user(request: Request[Any, Any, Any]) -> ConsoleUser:
    user = await session_user(request)
    if user is None:
        raise NotLoggedIn()
    return user


def check_form(request: Request[Any, Any, Any], user: ConsoleUser, form: Any) -> None:
    """Refuse a post that another site could have made: wrong origin or missing CSRF token."""
    check_origin(request)
    sent = str(form.get(CSRF_FIELD) or "")
    if not hmac.compare_digest(sent, user.csrf):
        raise CrossSiteRequest("The form has expired or did not come from this console.")


def check_origin(request: Request[Any, Any, Any]) -> None:
    """Browsers send ``Origin`` (and ``Sec-Fetch-Site``) with posts: both must say same origin."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise CrossSiteRequest("Cross-site form posts are refused.")
    origin = request.headers.get("origin")
    # The host only: behind a TLS-terminating proxy the scheme seen here may differ.
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise CrossSiteRequest("Cross-origin form posts are refused.")
