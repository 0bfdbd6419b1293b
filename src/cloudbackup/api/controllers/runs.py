"""The handlers every run resource has, made once: read one (B3/R3/C3), the PATCH (B4/R4/C4),
its errors (ER1-ER3) and its events (EV5-EV7).

Each kind's controller subclasses :class:`RunController`, which gives it its path, its ``runs``
dependency and these four (:func:`run_handlers`); it keeps what is its own (the start, the list
with its filters). Handler names and path parameter names stay the kind's (``get_backup``,
``{backup_id}``): the OpenAPI document names operations after them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

from litestar import Controller, get, patch
from litestar.di import NamedDependency, Provide
from litestar.handlers import HTTPRouteHandler
from litestar.params import HeaderParameter, RawBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from cloudbackup.api.auth import reporting_agent
from cloudbackup.api.call import AgentHeader, Call
from cloudbackup.api.controllers.events import event_list
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.paging import Paging
from cloudbackup.api.schemas.run_patch import MAX_INT32, RunPatch
from cloudbackup.domain.errors import InvalidInput
from cloudbackup.domain.runs import RunService

# An extension: the attempt a remote agent was handed a run with (its fencing token).
AttemptHeader = Annotated[str | None, HeaderParameter(name="X-Run-Attempt", required=False)]
Runs = NamedDependency[RunService[Any, Any, Any]]


@dataclass(frozen=True, slots=True)
class RunResource:
    """One kind of run as the API shows it."""

    noun: str  # "backup": the handlers' names and the path parameter ``backup_id``
    out_type: type[Any]
    out: Callable[[Any, LinkBuilder], Any]
    errors_type: Any
    errors_out: Callable[[Any, list[Any], LinkBuilder], Any]
    patch: RunPatch[Any]

    @property
    def plural(self) -> str:
        """ "backups": the path segment, the kind of link and the name of the service."""
        return f"{self.noun}s"

    @property
    def id_name(self) -> str:
        return f"{self.noun}_id"


def provided_as(name: str) -> Provide:
    """The app's dependency ``name`` under the name it is given here: Litestar injects by
    parameter name, so the provider's one parameter is called ``name``."""

    def provide(**named: Any) -> Any:
        return named[name]

    parameter = inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Runs)
    vars(provide)["__signature__"] = inspect.Signature([parameter])
    provide.__annotations__ = {name: Runs, "return": Any}
    return Provide(provide, sync_to_thread=False)


class RunController(Controller):
    """The controller of one kind of run: ``class BackupController(RunController,
    resource=BACKUPS)`` serves ``/v2/{project_id}/backups`` with the four shared handlers and
    gives them the ``backups`` service as ``runs``; the subclass adds the start and the list."""

    def __init_subclass__(cls, resource: RunResource | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if resource is None:
            return
        cls.path = f"/v2/{{project_id:str}}/{resource.plural}"
        cls.dependencies = {"runs": provided_as(resource.plural)}
        for handler in run_handlers(resource):
            setattr(cls, handler.handler_name, handler)


def run_attempt(header: str | None) -> int | None:
    """The ``X-Run-Attempt`` header as a positive integer (400 otherwise); None when absent."""
    if header is None:
        return None
    if not (header.isascii() and header.isdigit()) or not 0 < int(header) <= MAX_INT32:
        raise InvalidInput("Validation failed.", ["X-Run-Attempt must be a positive integer."])
    return int(header)


def run_handlers(resource: RunResource) -> tuple[HTTPRouteHandler, ...]:
    """GET one, PATCH, GET errors and GET events of ``resource``, in that order. The service
    comes from the controller's ``runs`` dependency."""
    id_name = resource.id_name
    one = f"/{{{id_name}:str}}"

    def get_run(self: Any, call: Call, runs: Runs) -> Any:
        run_id = call.request.path_params[id_name]
        return resource.out(runs.get(call.project_id, run_id), call.links)

    def update_run(
        self: Any,
        call: Call,
        body: RawBody,
        runs: Runs,
        x_agent_id: AgentHeader = None,
        x_run_attempt: AttemptHeader = None,
    ) -> None:
        update = resource.patch.parse(call.request, body)
        attempt = run_attempt(x_run_attempt)
        run_id = call.request.path_params[id_name]
        # X-Agent-Id stays documented; the guard checks it names the token's agent.
        runs.update(call.project_id, run_id, update, reporting_agent(call.request), attempt)

    def list_errors(self: Any, call: Call, runs: Runs) -> Any:
        row, items = runs.errors(call.project_id, call.request.path_params[id_name])
        return resource.errors_out(row, items, call.links)

    def list_events(self: Any, call: Call, runs: Runs, paging: Paging) -> dict[str, Any]:
        run_id = call.request.path_params[id_name]
        read = partial(runs.events, call.project_id, run_id)
        parts = (resource.plural, run_id, "events")
        return event_list(
            call, parts, read, paging, default_sort_dir="asc", empty_marker_is_none=True
        )

    # The kind's own names and response types, for the OpenAPI document.
    get_run.__name__ = f"get_{resource.noun}"
    get_run.__annotations__["return"] = resource.out_type
    update_run.__name__ = f"update_{resource.noun}"
    list_errors.__annotations__["return"] = resource.errors_type
    return (
        get(one, sync_to_thread=True)(get_run),
        patch(one, status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)(update_run),
        get(f"{one}/errors", sync_to_thread=True)(list_errors),
        get(f"{one}/events", sync_to_thread=True)(list_events),
    )
