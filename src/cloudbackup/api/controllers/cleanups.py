"""Cleanups: C1-C4, ER3 and EV7 (spec §5, §6, §10)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import HeaderParameter, QueryParameter, RawBody
from litestar.status_codes import HTTP_201_CREATED

from cloudbackup.api.call import Call
from cloudbackup.api.controllers.runs import RunResource, run_handlers
from cloudbackup.api.paging import Paging, paged_list
from cloudbackup.api.schemas.cleanups import (
    CLEANUP_PATCH,
    CleanupErrorListOut,
    CleanupList,
    CleanupOut,
    cleanup_errors_out,
    cleanup_out,
    parse_start,
)
from cloudbackup.domain.cleanups import CleanupService

AgentHeader = Annotated[str | None, HeaderParameter(name="X-Agent-Id", required=False)]
Query = Annotated[str | None, QueryParameter(required=False)]
Cleanups = NamedDependency[CleanupService]


CLEANUPS = RunResource(
    noun="cleanup",
    plural="cleanups",
    out_type=CleanupOut,
    out=cleanup_out,
    errors_type=CleanupErrorListOut,
    errors_out=cleanup_errors_out,
    patch=CLEANUP_PATCH,
)


def _runs(cleanups: Cleanups) -> CleanupService:
    return cleanups


class CleanupController(Controller):
    path = "/v2/{project_id:str}/cleanups"
    dependencies = {"runs": Provide(_runs, sync_to_thread=False)}
    # B3/R3/C3 read, PATCH, errors and events: the same for every run resource.
    get_cleanup, update_cleanup, list_errors, list_events = run_handlers(CLEANUPS)

    @post("/", status_code=HTTP_201_CREATED, sync_to_thread=True)
    def start_cleanup(
        self, call: Call, body: RawBody, cleanups: Cleanups, x_agent_id: AgentHeader = None
    ) -> Response[CleanupOut]:
        data = parse_start(call.request, body)
        row = cleanups.start(call.project_id, data.agent_id, data.state, x_agent_id)
        return call.created(cleanup_out(row, call.links), "cleanups", row.id)

    @get("/", sync_to_thread=True)
    def list_cleanups(self, call: Call, cleanups: Cleanups, paging: Paging) -> CleanupList:
        items, links = paged_list(
            call,
            ("cleanups",),
            lambda size, order: cleanups.page(
                call.project_id, marker=paging.marker, limit=size, sort_dir=order
            ),
            cleanup_out,
            paging,
        )
        return CleanupList(cleanups=items, links=links)
