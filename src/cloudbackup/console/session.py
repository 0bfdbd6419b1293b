"""Who is using the console: the API token kept in a cookie, and the CSRF token derived from it.

The cookie holds the same token the API takes in ``X-Auth-Token``; it is ``HttpOnly`` (scripts
cannot read it), ``Secure`` (browsers send it only over HTTPS, or to localhost) and
``SameSite=Strict`` (no other site's page makes the browser send it). The API itself never reads
cookies, so the cookie cannot be used against ``/v2``. Every console form carries
``HMAC-SHA256(token, "csrf")``: a page of another origin cannot know it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from litestar import Request

from cloudbackup.domain.auth import Permission, Principal
from cloudbackup.domain.credentials import principal_of

COOKIE = "cloudbackup_console"
COOKIE_PATH = "/console"
COOKIE_MAX_AGE = 12 * 3600  # a console session; the token's own expiry still applies
CSRF_FIELD = "csrf_token"


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
    secret: str
    principal: Principal

    @property
    def project_id(self) -> str:
        return self.principal.project_id

    @property
    def csrf(self) -> str:
        return csrf_token(self.secret)

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


async def current_user(request: Request[Any, Any, Any]) -> ConsoleUser:
    secret = request.cookies.get(COOKIE, "")
    principal = await lookup(request, secret)
    if principal is None:
        raise NotLoggedIn()
    return ConsoleUser(secret, principal)


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
