"""Backups: B1-B4, ER1 and EV5 (spec §3, §6, §10)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, QueryParameter, RawBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from cloudbackup.api.body import boolean, decode_json
from cloudbackup.api.controllers.events import run_event_list
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.paging import paged_list
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


class BackupController(Controller):
    path = "/v2/{project_id:str}/backups"

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
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        backups: Backups,
        marker: Query = None,
        limit: Query = None,
        sort_dir: Query = None,
        restorable: Query = None,
        configuration_id: Query = None,
    ) -> BackupList:
        filters = {
            k: v
            for k, v in (("restorable", restorable), ("configuration_id", configuration_id))
            if v is not None
        }
        items, links = paged_list(
            request,
            project_id,
            ("backups",),
            lambda size, order: backups.page(
                project_id,
                marker=marker,
                limit=size,
                sort_dir=order,
                restorable=boolean("restorable", restorable),
                configuration_id=configuration_id,
            ),
            backup_out,
            marker=marker,
            limit=limit,
            sort_dir=sort_dir,
            filters=filters,
        )
        return BackupList(backups=items, links=links)

    @get("/{backup_id:str}", sync_to_thread=True)
    def get_backup(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        backup_id: FromPath[str],
        backups: Backups,
    ) -> BackupOut:
        return backup_out(backups.get(project_id, backup_id), LinkBuilder(request, project_id))

    @patch("/{backup_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def update_backup(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        backup_id: FromPath[str],
        body: RawBody,
        backups: Backups,
        x_agent_id: AgentHeader = None,
    ) -> None:
        backups.update(project_id, backup_id, BACKUP_PATCH.parse(request, body), x_agent_id)

    @get("/{backup_id:str}/errors", sync_to_thread=True)
    def list_errors(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        backup_id: FromPath[str],
        backups: Backups,
    ) -> ErrorListOut:
        row, items = backups.errors(project_id, backup_id)
        return error_list_out(row, items, LinkBuilder(request, project_id))

    @get("/{backup_id:str}/events", sync_to_thread=True)
    def list_events(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        backup_id: FromPath[str],
        backups: Backups,
        marker: Query = None,
        limit: Query = None,
        sort_dir: Query = None,
    ) -> dict[str, Any]:
        return run_event_list(
            request,
            project_id,
            ("backups", backup_id, "events"),
            lambda after, size, direction: backups.events(
                project_id, backup_id, marker=after, limit=size, sort_dir=direction
            ),
            marker,
            limit,
            sort_dir,
        )
