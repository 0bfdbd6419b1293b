"""Backups: B1-B4, ER1 and EV5 (spec §3, §6, §10)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, QueryParameter, RawBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from cloudbackup.api.body import (
    boolean,
    convert_value,
    decode_json,
    decode_patch,
)
from cloudbackup.api.controllers.events import run_event_list
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.paging import paged_list
from cloudbackup.api.schemas.backups import (
    BackupList,
    BackupOut,
    ErrorListOut,
    ReportedErrors,
    StartBackup,
    backup_out,
    error_list_out,
)
from cloudbackup.api.schemas.times import parse_iso
from cloudbackup.domain.backups import (
    BackupService,
    BackupStarter,
    BackupUpdate,
    ErrorItem,
    ErrorReport,
)
from cloudbackup.domain.errors import InvalidInput
from cloudbackup.domain.run_states import BACKUP_MACHINE

AgentHeader = Annotated[str | None, HeaderParameter(name="X-Agent-Id", required=False)]
Query = Annotated[str | None, QueryParameter(required=False)]
Backups = NamedDependency[BackupService]
BackupStarts = NamedDependency[BackupStarter]

COUNTER_PATHS = {
    "/files_searched",
    "/files_backed_up",
    "/bytes_searched",
    "/bytes_backed_up",
    "/bytes_in_db",
    "/bandwidth_avg_bps",
}
PATCH_PATHS = COUNTER_PATHS | {"/state", "/started_time", "/ended_time", "/snapshot_id", "/errors"}


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
        backups.update(project_id, backup_id, parse_backup_patch(request, body), x_agent_id)

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


def parse_backup_patch(request: Request[Any, Any, Any], body: bytes) -> BackupUpdate:
    """Turn a B4 JSON Patch into a ``BackupUpdate``; any unknown path or bad value is a 400."""
    update = BackupUpdate()
    for op in decode_patch(request, body, frozenset({"replace", "add"})):
        if op.path not in PATCH_PATHS:
            raise InvalidInput(
                "Validation failed.",
                [f"{op.path} cannot be changed; writable: {', '.join(sorted(PATCH_PATHS))}."],
            )
        if op.path == "/state":
            value = convert_value(op.value, str, op.path)
            state = BACKUP_MACHINE.parse(value)
            if state is None or state.value in ("start_requested", "start_scheduled", "missed"):
                raise InvalidInput("Validation failed.", [f"/state cannot be set to {value!r}."])
            update.state = state
        elif op.path in ("/started_time", "/ended_time"):
            text = convert_value(op.value, str, op.path)
            try:
                moment = parse_iso(text)
            except ValueError as exc:
                raise InvalidInput(
                    "Validation failed.", [f"{op.path}: {text!r} is not an ISO 8601 time."]
                ) from exc
            setattr(update, op.path[1:], moment)
        elif op.path == "/snapshot_id":
            update.snapshot_id = convert_value(op.value, int, op.path)
        elif op.path == "/errors":
            reported = convert_value(op.value, ReportedErrors, op.path)
            update.errors = ErrorReport(
                count=reported.count,
                reason=reported.reason,
                diagnostics=reported.diagnostics,
                items=[
                    ErrorItem(
                        index=item.index,
                        path=item.path,
                        type=item.type,
                        exception_code=item.exception.code if item.exception else None,
                        exception_description=item.exception.description
                        if item.exception
                        else None,
                        exception_details=item.exception.details if item.exception else None,
                    )
                    for item in reported.items
                ],
            )
        else:
            count = convert_value(op.value, int, op.path)
            if count < 0:
                raise InvalidInput("Validation failed.", [f"{op.path} must not be negative."])
            update.counters[op.path[1:]] = count
    return update
