"""Restores: R1-R4, ER2 and EV6 (spec §4, §6, §10)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import HeaderParameter, QueryParameter, RawBody
from litestar.status_codes import HTTP_201_CREATED

from cloudbackup.api.call import Call
from cloudbackup.api.controllers.runs import RunResource, run_handlers
from cloudbackup.api.paging import Paging, paged_list
from cloudbackup.api.schemas.restores import (
    RESTORE_PATCH,
    RestoreList,
    RestoreOut,
    parse_start,
    restore_errors_out,
    restore_out,
)
from cloudbackup.domain.restores import RestoreService

AgentHeader = Annotated[str | None, HeaderParameter(name="X-Agent-Id", required=False)]
Query = Annotated[str | None, QueryParameter(required=False)]
Restores = NamedDependency[RestoreService]


RESTORES = RunResource(
    noun="restore",
    plural="restores",
    out_type=RestoreOut,
    out=restore_out,
    errors_type=dict[str, Any],
    errors_out=restore_errors_out,
    patch=RESTORE_PATCH,
)


def _runs(restores: Restores) -> RestoreService:
    return restores


class RestoreController(Controller):
    path = "/v2/{project_id:str}/restores"
    dependencies = {"runs": Provide(_runs, sync_to_thread=False)}
    # B3/R3/C3 read, PATCH, errors and events: the same for every run resource.
    get_restore, update_restore, list_errors, list_events = run_handlers(RESTORES)

    @post("/", status_code=HTTP_201_CREATED, sync_to_thread=True)
    def start_restore(self, call: Call, body: RawBody, restores: Restores) -> Response[RestoreOut]:
        row = restores.start(call.project_id, parse_start(call.request, body))
        return call.created(restore_out(row, call.links), "restores", row.id)

    @get("/", sync_to_thread=True)
    def list_restores(self, call: Call, restores: Restores, paging: Paging) -> RestoreList:
        items, links = paged_list(
            call,
            ("restores",),
            lambda size, order: restores.page(
                call.project_id, marker=paging.marker, limit=size, sort_dir=order
            ),
            lambda row, links: restore_out(row, links, detail=False),
            paging,
        )
        return RestoreList(restores=items, links=links)
