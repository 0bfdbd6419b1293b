"""The web console under ``/console``: server-rendered pages over the same API the CLI uses.

:data:`CONSOLE` mounts the pages of each resource (``console/backups.py``, ``restores.py`` ...)
with what they have in common: the logged-in ``user`` read from the console cookie, and failures
answered as HTML pages. Forms post back here (CSRF-checked), and are answered with a redirect
(303), or with the form again and the API's reasons when it refused. A little JavaScript
(static/console.js) refreshes the parts marked ``data-live`` while a run is going; without it the
pages still work.
"""

from __future__ import annotations

from typing import Any

from litestar import Response, Router, get
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.params import FromPath
from litestar.response import Redirect

from cloudbackup.client.api import ApiError, Unreachable
from cloudbackup.console.agents import AgentPages
from cloudbackup.console.backups import BackupPages
from cloudbackup.console.configurations import ConfigurationPages
from cloudbackup.console.forms import Problem
from cloudbackup.console.login import LoginPages
from cloudbackup.console.queues import QueuePages
from cloudbackup.console.render import SECURITY_HEADERS, page, static_file
from cloudbackup.console.restores import RestoreFormPage, RestorePages
from cloudbackup.console.session import (
    COOKIE,
    COOKIE_PATH,
    Can,
    CrossSiteRequest,
    NotLoggedIn,
    current_user,
)
from cloudbackup.console.views import AnyRequest, redirect
from cloudbackup.domain.errors import DomainError, status_of


# -- failures: HTML here, the API's own JSON handlers stay in charge of /v2 ----------------------
def _to_login(request: AnyRequest, _: NotLoggedIn) -> Response[Any]:
    if request.headers.get("x-requested-with") == "console":
        return Response("", status_code=401, headers=dict(SECURITY_HEADERS))  # the JS reloads
    response = redirect("/console/login", next=request.url.path)
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


def _error_page(request: AnyRequest, status: int, message: str, errors: list[str]) -> Response[str]:
    return page(
        "error.html",
        status,
        user=None,
        can=Can(),
        nav=(),
        active="",
        notice=None,
        problem=Problem(status, message, errors),
        path=request.url.path,
    )


def _on_cross_site(request: AnyRequest, exc: CrossSiteRequest) -> Response[str]:
    return _error_page(request, 403, str(exc), [])


def _on_api_error(request: AnyRequest, exc: ApiError) -> Response[str]:
    return _error_page(request, exc.status, exc.message, exc.errors)


def _on_domain_error(request: AnyRequest, exc: DomainError) -> Response[str]:
    return _error_page(request, status_of(exc), exc.message, exc.errors)


def _on_http_error(request: AnyRequest, exc: HTTPException) -> Response[str]:
    return _error_page(request, exc.status_code, str(exc.detail or "Request failed."), [])


def _on_unreachable(request: AnyRequest, exc: Unreachable) -> Response[str]:
    return _error_page(request, 502, str(exc), [])


@get("/")
async def home() -> Redirect:
    return redirect("/console/backups")


@get("/static/{name:str}", cache_control=None)
async def static(name: FromPath[str]) -> Response[bytes]:
    found = static_file(name)
    if found is None:
        raise HTTPException(status_code=404, detail="Not found.")
    content, media_type = found
    return Response(
        content,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


CONSOLE = Router(
    "/console",
    route_handlers=[
        home,
        static,
        LoginPages,
        BackupPages,
        RestoreFormPage,
        RestorePages,
        ConfigurationPages,
        AgentPages,
        QueuePages,
    ],
    # The API's X-Auth-Token guard skips these routes: they check the console cookie instead.
    opt={"public": True},
    include_in_schema=False,
    dependencies={"user": Provide(current_user)},
    exception_handlers={
        NotLoggedIn: _to_login,
        CrossSiteRequest: _on_cross_site,
        ApiError: _on_api_error,
        DomainError: _on_domain_error,
        HTTPException: _on_http_error,
        Unreachable: _on_unreachable,
    },
)
