"""Logging in and out: the token typed into the login form opens a console session (cookie)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get, post

from cloudbackup.console.forms import Problem, posted_form
from cloudbackup.console.session import (
    COOKIE,
    COOKIE_PATH,
    check_origin,
    end_session,
    lookup,
    session_cookie,
    session_user,
    start_session,
)
from cloudbackup.console.views import AnyRequest, LoggedIn, Query, redirect, view

INVALID_TOKEN = "The token is invalid, expired or revoked."


def _local(target: str | None) -> str:
    """A post-login destination inside the console only (no open redirect)."""
    if target and target.startswith("/console/") and not target.startswith("//"):
        return target
    return "/console/backups"


def _plain(request: AnyRequest) -> bool:
    """Plain HTTP to a host other than this machine: browsers drop the Secure cookie there."""
    host = (request.url.hostname or "").lower()
    return request.url.scheme != "https" and host not in ("localhost", "127.0.0.1", "::1")


class LoginPages(Controller):
    @get("/login")
    async def login_form(self, request: AnyRequest, next: Query = "") -> Response[Any]:
        if await session_user(request) is not None:
            return redirect(_local(next))
        return view(request, None, "login.html", next=_local(next), plain_http=_plain(request))

    @post("/login")
    async def login(self, request: AnyRequest) -> Response[Any]:
        check_origin(request)
        form = await request.form()
        secret = str(form.get("token") or "").strip()
        target = _local(str(form.get("next") or ""))
        principal = await lookup(request, secret)
        if principal is None:
            return view(
                request,
                None,
                "login.html",
                status=401,
                next=target,
                plain_http=_plain(request),
                problem=Problem(401, INVALID_TOKEN, []),
            )
        session_secret = await start_session(request, secret, principal)
        response = redirect(target)
        response.set_cookie(session_cookie(session_secret))
        return response

    @post("/logout")
    async def logout(self, request: AnyRequest, user: LoggedIn) -> Response[Any]:
        await posted_form(request, user)
        await end_session(request, user)
        response = redirect("/console/login")
        response.delete_cookie(COOKIE, path=COOKIE_PATH)
        return response
