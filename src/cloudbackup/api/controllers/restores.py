"""Restores: R1-R4, ER2 and EV6 (spec §4, §6, §10)."""

from __future__ import annotations

from typing import Any

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.params import RawBody
from litestar.status_codes import HTTP_201_CREATED

from cloudbackup.api.call import Call
from cloudbackup.api.controllers.runs import RunController, RunResource
from cloudbackup.api.paging import Paging, paged_rows
from cloudbackup.api.schemas.restores import (
    RESTORE_PATCH,
    RestoreList,
    RestoreOut,
    parse_start,
    restore_errors_out,
    restore_list_item,
    restore_out,
)
from cloudbackup.domain.restores import RestoreService

Restores = NamedDependency[RestoreService]
RESTORES = RunResource(
    "restore", RestoreOut, restore_out, dict[str, Any], restore_errors_out, RESTORE_PATCH
)


class RestoreController(RunController, resource=RESTORES):
    """R1 and R2 here; R3/R4, ER2 and EV6 are every run resource's (``RunController``)."""

    @post("/", status_code=HTTP_201_CREATED, sync_to_thread=True)
    def start_restore(self, call: Call, body: RawBody, restores: Restores) -> Response[RestoreOut]:
        row = restores.start(call.project_id, parse_start(call.request, body))
        return call.created(restore_out(row, call.links), "restores", row.id)

    @get("/", sync_to_thread=True)
    def list_restores(self, call: Call, restores: Restores, paging: Paging) -> RestoreList:
        items, links = paged_rows(call, ("restores",), restores.page, restore_list_item, paging)
        return RestoreList(restores=items, links=links)
