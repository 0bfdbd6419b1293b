"""Cleanups: C1-C4, ER3 and EV7 (spec §5, §6, §10)."""

from __future__ import annotations

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.params import RawBody
from litestar.status_codes import HTTP_201_CREATED

from cloudbackup.api.call import AgentHeader, Call
from cloudbackup.api.controllers.runs import RunController, RunResource
from cloudbackup.api.paging import Paging, paged_rows
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

Cleanups = NamedDependency[CleanupService]
CLEANUPS = RunResource(
    "cleanup", CleanupOut, cleanup_out, CleanupErrorListOut, cleanup_errors_out, CLEANUP_PATCH
)


class CleanupController(RunController, resource=CLEANUPS):
    """C1 and C2 here; C3/C4, ER3 and EV7 are every run resource's (``RunController``)."""

    @post("/", status_code=HTTP_201_CREATED, sync_to_thread=True)
    def start_cleanup(
        self, call: Call, body: RawBody, cleanups: Cleanups, x_agent_id: AgentHeader = None
    ) -> Response[CleanupOut]:
        data = parse_start(call.request, body)
        row = cleanups.start(call.project_id, data.agent_id, data.state, x_agent_id)
        return call.created(cleanup_out(row, call.links), "cleanups", row.id)

    @get("/", sync_to_thread=True)
    def list_cleanups(self, call: Call, cleanups: Cleanups, paging: Paging) -> CleanupList:
        items, links = paged_rows(call, ("cleanups",), cleanups.page, cleanup_out, paging)
        return CleanupList(cleanups=items, links=links)
