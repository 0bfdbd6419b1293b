"""Restore drills (issue 14, an API extension; no v2 body changes): start and list a backup's
drills under ``/backups/{backup_id}/drills``; read one, its errors and events, or ask it to stop
under ``/drills/{drill_id}`` (the handlers every run resource shares)."""

from __future__ import annotations

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.status_codes import HTTP_201_CREATED

from cloudbackup.api.call import Call
from cloudbackup.api.controllers.runs import RunResource, run_handlers
from cloudbackup.api.paging import Paging, paged_list
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

DRILLS = RunResource(
    noun="drill",
    plural="drills",
    out_type=DrillOut,
    out=drill_out,
    errors_type=ErrorListOut,
    errors_out=drill_errors_out,
    patch=DRILL_PATCH,
)


def _runs(drills: Drills) -> DrillService:
    return drills


class DrillController(Controller):
    path = "/v2/{project_id:str}/drills"
    dependencies = {"runs": Provide(_runs, sync_to_thread=False)}
    get_drill, update_drill, list_errors, list_events = run_handlers(DRILLS)


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
        items, links = paged_list(
            call,
            ("backups", backup_id, "drills"),
            lambda size, order: drills.page_of_backup(
                call.project_id, backup_id, marker=paging.marker, limit=size, sort_dir=order
            ),
            drill_list_item,
            paging,
        )
        return DrillList(drills=items, links=links)
