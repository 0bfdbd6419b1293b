"""Restore drills (issue 14, an API extension; no v2 body changes): start and list a backup's
drills under ``/backups/{backup_id}/drills``; read one, its errors and events, or ask it to stop
under ``/drills/{drill_id}`` (the handlers every run resource shares)."""

from __future__ import annotations

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.status_codes import HTTP_201_CREATED

from cloudbackup.api.call import Call
from cloudbackup.api.controllers.runs import RunController, RunResource
from cloudbackup.api.paging import Paging, paged_rows
from cloudbackup.api.schemas.backups import ErrorListOut
from cloudbackup.api.schemas.drills import (
    DRILL_PATCH,
    DrillList,
    DrillOut,
    drill_errors_out,
    drill_list_item,
    drill_out,
)
from cloudbackup.domain.drills import DrillService

Drills = NamedDependency[DrillService]
DRILLS = RunResource("drill", DrillOut, drill_out, ErrorListOut, drill_errors_out, DRILL_PATCH)


class DrillController(RunController, resource=DRILLS):
    """One drill: read, PATCH, errors and events (``RunController``)."""


class BackupDrillController(Controller):
    path = "/v2/{project_id:str}/backups/{backup_id:str}/drills"

    @post("/", status_code=HTTP_201_CREATED, sync_to_thread=True)
    def start_drill(
        self, call: Call, backup_id: FromPath[str], drills: Drills
    ) -> Response[DrillOut]:
        row = drills.start(call.project_id, backup_id)
        return call.created(drill_out(row, call.links), "drills", row.id)

    @get("/", sync_to_thread=True)
    def list_drills(
        self, call: Call, backup_id: FromPath[str], drills: Drills, paging: Paging
    ) -> DrillList:
        parts = ("backups", backup_id, "drills")
        page = drills.page_of_backup
        items, links = paged_rows(call, parts, page, drill_list_item, paging, backup_id=backup_id)
        return DrillList(drills=items, links=links)
