"""Backups: B1-B4, ER1 and EV5 (spec §3, §6, §10)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, HeaderParameter, QueryParameter, RawBody
from litestar.status_codes import HTTP_201_CREATED

from cloudbackup.api.body import boolean, decode_json
from cloudbackup.api.call import Call
from cloudbackup.api.controllers.runs import RunResource, run_handlers
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.paging import Paging, paged_list
from cloudbackup.api.schemas.backups import (
    BACKUP_PATCH,
    BackupList,
    BackupOut,
    ErrorListOut,
    StartBackup,
    backup_out,
    error_list_out,
)
from cloudbackup.domain.backups import BackupService, BackupStarter

AgentHeader = Annotated[str | None, HeaderParameter(name="X-Agent-Id", required=False)]
Query = Annotated[str | None, QueryParameter(required=False)]
Backups = NamedDependency[BackupService]
BackupStarts = NamedDependency[BackupStarter]


BACKUPS = RunResource(
    noun="backup",
    plural="backups",
    out_type=BackupOut,
    out=backup_out,
    errors_type=ErrorListOut,
    errors_out=error_list_out,
    patch=BACKUP_PATCH,
)


def _runs(backups: Backups) -> BackupService:
    return backups


class BackupController(Controller):
    path = "/v2/{project_id:str}/backups"
    dependencies = {"runs": Provide(_runs, sync_to_thread=False)}
    # B3/R3/C3 read, PATCH, errors and events: the same for every run resource.
    get_backup, update_backup, list_errors, list_events = run_handlers(BACKUPS)

    @post("/", status_code=HTTP_201_CREATED)
    async def start_backup(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        body: RawBody,
        backup_starts: BackupStarts,
        x_agent_id: AgentHeader = None,
    ) -> Response[BackupOut]:
        data = decode_json(request, body, StartBackup)
        row = await backup_starts.start(project_id, data.configuration_id, data.state, x_agent_id)
        links = LinkBuilder(request, project_id)
        return Response(
            backup_out(row, links),
            status_code=HTTP_201_CREATED,
            headers={"Location": links.href("backups", row.id)},
        )

    @get("/", sync_to_thread=True)
    def list_backups(
        self,
        call: Call,
        backups: Backups,
        paging: Paging,
        restorable: Query = None,
        configuration_id: Query = None,
    ) -> BackupList:
        filters = {
            k: v
            for k, v in (("restorable", restorable), ("configuration_id", configuration_id))
            if v is not None
        }
        items, links = paged_list(
            call,
            ("backups",),
            lambda size, order: backups.page(
                call.project_id,
                marker=paging.marker,
                limit=size,
                sort_dir=order,
                restorable=boolean("restorable", restorable),
                configuration_id=configuration_id,
            ),
            backup_out,
            paging,
            filters=filters,
        )
        return BackupList(backups=items, links=links)
