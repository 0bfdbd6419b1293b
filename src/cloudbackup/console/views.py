"""What every console page shares: the API as the logged-in user, the layout's context, redirects
and checked form posts.

Each page calls the v2 API in-process (``httpx.ASGITransport`` on this very app) with the token
from the console cookie, so the console has exactly the API's rules, roles and messages and
none of its own.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, cast
from urllib.parse import urlencode

import httpx
from litestar import Request, Response
from litestar.datastructures import FormMultiDict
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Redirect

from cloudbackup.client.api import ApiError, AsyncApiClient
from cloudbackup.client.drafts import DraftError
from cloudbackup.console.render import SECURITY_HEADERS, page
from cloudbackup.console.session import CSRF_FIELD, Can, ConsoleUser, check_form

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


@dataclass
class Problem:
    """An API refusal shown on a page: its status, message and per-field errors."""

    status: int
    message: str
    errors: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, exc: ApiError | DraftError) -> Problem:
        """The API's refusal, or a 400 of the console's own for a field that does not parse."""
        if isinstance(exc, DraftError):
            return cls(400, str(exc))
        return cls(exc.status, exc.message, exc.errors)


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


async def form_page(
    request: AnyRequest,
    user: ConsoleUser,
    api: AsyncApiClient,
    template: str,
    *,
    active: str,
    status: int = 200,
    problem: Problem | None = None,
    **context: Any,
) -> Response[str]:
    """A form with the agents to choose from, and the API's ``problem`` when it refused it."""
    agents = (await api.list_agents())["agents"]
    return view(
        request,
        user,
        template,
        active=active,
        status=status,
        agents=agents,
        problem=problem,
        **context,
    )


async def posted_form(request: AnyRequest, user: ConsoleUser) -> FormMultiDict:
    """The form of a post, once it is known to come from this console (origin and CSRF)."""
    form = await request.form()
    check_form(request, user, form)
    return form


async def post_action(
    request: AnyRequest,
    user: ConsoleUser,
    act: Callable[[AsyncApiClient], Awaitable[object]],
    target: str,
    **query: str,
) -> Redirect:
    """A form button that changes one thing: CSRF-checked, ``act`` on the API, then redirect."""
    await posted_form(request, user)
    async with api_for(request, user) as api:
        await act(api)
    return redirect(target, **query)


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
