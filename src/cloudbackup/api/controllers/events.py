"""Events: EV1-EV4 and EV8 (spec §10, §15); the event list of one run (EV5-EV7) for the
backups, restores and cleanups controllers."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from litestar import Controller, Response, get, post
from litestar.params import RawBody
from litestar.status_codes import HTTP_202_ACCEPTED

from cloudbackup.api.auth import reporting_agent
from cloudbackup.api.call import AgentHeader, ApiCall, Call, Id
from cloudbackup.api.paging import ListQuery, Paging, paged_list
from cloudbackup.api.schemas.event_requests import parse_activation, parse_agent_event
from cloudbackup.api.schemas.events import event_out
from cloudbackup.api.schemas.run_patch import MAX_INT32
from cloudbackup.api.service_types import Events
from cloudbackup.domain.errors import InvalidInput
from cloudbackup.store.repositories import Page, SortDir
from cloudbackup.store.tables import Event


def accepted() -> Response[bytes]:
    """202 without a body (spec EV1, EV3)."""
    return Response(content=b"", status_code=HTTP_202_ACCEPTED)


def event_marker(marker: str | None) -> int | None:
    if marker is None:
        return None
    if not (marker.isascii() and marker.isdigit()) or len(marker) > 18:
        raise InvalidInput("Validation failed.", ["marker must be an event id (digits)."])
    # Event ids are 32-bit (PostgreSQL refuses a wider operand: a 500): a wider marker pages
    # as the widest id does, as it did on SQLite.
    return min(int(marker), MAX_INT32)


class EventPage(Protocol):
    """Reads one event list: the page after ``marker`` (an event id) in ``sort_dir``."""

    def __call__(self, *, marker: int | None, limit: int, sort_dir: SortDir) -> Page[Event]: ...


def event_list(
    call: ApiCall,
    parts: tuple[str, ...],
    read: EventPage,
    paging: ListQuery,
    *,
    default_sort_dir: SortDir,
    empty_marker_is_none: bool = False,
) -> dict[str, Any]:
    """The envelope of every event list: ``events`` and paging ``links`` (spec §10), of the page
    ``read`` returns. The events of one run (EV5-EV7) read an empty marker as none."""
    marker = (paging.marker or None) if empty_marker_is_none else paging.marker
    events, links = paged_list(
        call,
        parts,
        lambda size, order: read(marker=event_marker(marker), limit=size, sort_dir=order),
        lambda row, _: event_out(row),
        paging,
        default_sort_dir=default_sort_dir,
    )
    return {"events": events, "links": links}


def owned_events(
    call: ApiCall,
    paging: ListQuery,
    owner: tuple[str, str],
    read: Callable[..., Page[Event]],
    default_sort_dir: SortDir,
) -> dict[str, Any]:
    """The events of one ``owner`` (``("agents", agent_id)``...) at ``/{owner}/events``, as
    ``read(project_id, owner_id, ...)`` pages them."""
    parts = (*owner, "events")
    page = partial(read, call.project_id, owner[1])
    return event_list(call, parts, page, paging, default_sort_dir=default_sort_dir)


class ProjectEventController(Controller):
    path = "/v2/{project_id:str}/events"

    @post("/", status_code=HTTP_202_ACCEPTED, sync_to_thread=True)
    def activate_agents(self, call: Call, body: RawBody, events: Events) -> Response[bytes]:
        data = parse_activation(call.request, body)
        events.activate_project(call.project_id, data.event, data.mode)
        return accepted()

    @get("/", sync_to_thread=True)
    def list_project_events(self, call: Call, events: Events, paging: Paging) -> dict[str, Any]:
        read = partial(events.project_events, call.project_id)
        return event_list(call, ("events",), read, paging, default_sort_dir="desc")


class AgentEventController(Controller):
    path = "/v2/{project_id:str}/agents/{agent_id:str}/events"

    @post("/", status_code=HTTP_202_ACCEPTED, sync_to_thread=True)
    def post_agent_event(
        self,
        call: Call,
        agent_id: Id,
        body: RawBody,
        events: Events,
        x_agent_id: AgentHeader = None,
    ) -> Response[bytes]:
        event = parse_agent_event(call.request, body)
        reporter = reporting_agent(call.request)
        events.post_agent_event(call.project_id, agent_id, event, x_agent_id, reporter)
        return accepted()

    @get("/", sync_to_thread=True)
    def list_agent_events(
        self, call: Call, agent_id: Id, events: Events, paging: Paging
    ) -> dict[str, Any]:
        return owned_events(call, paging, ("agents", agent_id), events.agent_events, "asc")


class ConfigurationEventController(Controller):
    path = "/v2/{project_id:str}/configurations/{configuration_id:str}/events"

    @get("/", sync_to_thread=True)
    def list_configuration_events(
        self, call: Call, configuration_id: Id, events: Events, paging: Paging
    ) -> dict[str, Any]:
        owner = ("configurations", configuration_id)
        return owned_events(call, paging, owner, events.configuration_events, "desc")
