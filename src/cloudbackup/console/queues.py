"""The queues page of the operator project: queues and workers, pause and resume."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get, post
from litestar.params import FromPath

from cloudbackup.client.api import ApiError
from cloudbackup.console.forms import Problem, posted_form
from cloudbackup.console.views import AnyRequest, LoggedIn, Query, api_for, redirect, view


class QueuePages(Controller):
    @get("/queues")
    async def queues(
        self, request: AnyRequest, user: LoggedIn, notice: Query = ""
    ) -> Response[str]:
        data: dict[str, Any] = {}
        problem = None
        async with api_for(request, user) as api:
            try:
                data = await api.list_queues()
            except ApiError as exc:
                if exc.status >= 500:
                    raise
                problem = Problem.of(exc)  # not the operator project, or no admin API
        return view(
            request,
            user,
            "queues.html",
            active="queues",
            notice=notice,
            problem=problem,
            queues=data.get("queues") or [],
            workers=data.get("workers") or [],
            missing=problem is not None and problem.status in (404, 405, 501),
        )

    @post("/queues/{name:str}")
    async def update_queue(
        self, request: AnyRequest, user: LoggedIn, name: FromPath[str]
    ) -> Response[Any]:
        form = await posted_form(request, user)
        paused = form.get("action") == "pause"
        async with api_for(request, user) as api:
            await api.update_queue(name, {"/paused": paused})
        return redirect("/console/queues", notice="paused" if paused else "resumed")
