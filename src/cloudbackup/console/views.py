"""What every console page shares: the API as the logged-in user, the layout's context and
redirects (the forms' share is in :mod:`cloudbackup.console.forms`).

Each page calls the v2 API in-process (``httpx.ASGITransport`` on this very app) with the token
from the console cookie, so the console has exactly the API's rules, roles and messages and
none of its own.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, cast
from urllib.parse import urlencode

import httpx
from litestar import Request, Response
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Redirect

from cloudbackup.client.api import AsyncApiClient
from cloudbackup.console.render import SECURITY_HEADERS, page
from cloudbackup.console.session import CSRF_FIELD, Can, ConsoleUser

AnyRequest = Request[Any, Any, Any]
Query = Annotated[str, QueryParameter(required=False)]
# The logged-in user, from the console cookie: the router provides it as ``user``.
LoggedIn = NamedDependency[ConsoleUser]
NOTICES = {
    "started": "Backup started.",
    "stopping": "Stop requested: the backup ends within a few seconds.",
    "created": "Configuration created.",
    "saved": "Configuration saved.",
    "deleted": "Configuration deleted.",
    "restore": "Restore started.",
    "restore-stopping": "Stop requested: the restore ends within a few seconds.",
    "paused": "Queue paused.",
    "resumed": "Queue resumed.",
}
NAV = (
    ("backups", "/console/backups", "Backups"),
    ("configurations", "/console/configurations", "Configurations"),
    ("agents", "/console/agents", "Agents"),
    ("restores", "/console/restores", "Restores"),
    ("queues", "/console/queues", "Queues"),
)


@asynccontextmanager
async def api_for(request: AnyRequest, user: ConsoleUser) -> AsyncIterator[AsyncApiClient]:
    """An API client that calls this app in-process, as the logged-in user."""
    base = str(request.base_url).rstrip("/")
    transport = httpx.ASGITransport(app=cast(Any, request.app))
    async with httpx.AsyncClient(transport=transport, base_url=base) as http:
        yield AsyncApiClient(http, base, user.project_id, user.secret)


def redirect(path: str, **query: str) -> Redirect:
    """A 303 to ``path`` (with ``query``), the answer to every form post that went through."""
    target = f"{path}?{urlencode(query)}" if query else path
    return Redirect(path=target, status_code=303, headers=dict(SECURITY_HEADERS))


def view(
    request: AnyRequest,
    user: ConsoleUser | None,
    template: str,
    *,
    active: str = "",
    status: int = 200,
    notice: str = "",
    **context: Any,
) -> Response[str]:
    """The page ``template`` in the layout: navigation, the user's buttons and a ``notice``."""
    return page(
        template,
        status,
        user=user,
        can=user.can if user else Can(),
        csrf_field=CSRF_FIELD,
        nav=NAV,
        active=active,
        notice=NOTICES.get(notice or ""),
        path=request.url.path,
        **context,
    )


async def render(
    request: AnyRequest,
    user: ConsoleUser,
    template: str,
    load: Callable[[AsyncApiClient], Awaitable[dict[str, Any]]],
    **layout: Any,
) -> Response[str]:
    """The logged-in user's page ``template`` with what ``load`` reads from the API."""
    async with api_for(request, user) as api:
        context = await load(api)
    return view(request, user, template, **layout, **context)


async def names(api: AsyncApiClient) -> tuple[dict[str, str], dict[str, str]]:
    """Configuration id -> name and agent id -> name, for tables and selects; a name that two
    of them share carries the start of the id, so they can be told apart."""
    configs, agents = await asyncio.gather(api.list_configurations(), api.list_agents())
    return _told_apart(configs["configurations"]), _told_apart(agents["agents"])


def _told_apart(items: list[dict[str, Any]]) -> dict[str, str]:
    counts = Counter(item.get("name", "") for item in items)
    return {
        item["id"]: (
            f"{item.get('name', '')} ({item['id'][:8]})"
            if counts[item.get("name", "")] > 1
            else item.get("name", "")
        )
        for item in items
    }
