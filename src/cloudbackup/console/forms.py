"""What the console's forms share: the checked post, the form page with the API's refusal
(:class:`Problem`), and the one-button action."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from litestar import Response
from litestar.datastructures import FormMultiDict
from litestar.response import Redirect

from cloudbackup.client.api import ApiError, AsyncApiClient
from cloudbackup.client.drafts import DraftError
from cloudbackup.console.session import ConsoleUser, check_form
from cloudbackup.console.views import AnyRequest, api_for, redirect, view


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
