"""Backups: B1-B4, ER1 and EV5 (spec §3, §6, §10)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, RawBody
from litestar.status_codes import HTTP_201_CREATED

from cloudbackup.api.body import boolean, decode_json
from cloudbackup.api.call import AgentHeader, Call, Query
from cloudbackup.api.controllers.runs import RunController, RunResource
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.paging import Paging, paged_rows
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

Backups = NamedDependency[BackupService]
BackupStarts = NamedDependency[BackupStarter]


@dataclass(frozen=True, slots=True)
class BackupFilters:
    """B2's filters as sent; like ``paging``, a dependency whose query parameters the OpenAPI
    document lists where the handler takes it."""

    restorable: str | None
    configuration_id: str | None

    def given(self) -> dict[str, str]:
        """The filters sent, as the page links repeat them."""
        return {name: value for name, value in asdict(self).items() if value is not None}


def backup_filters(restorable: Query = None, configuration_id: Query = None) -> BackupFilters:
    return BackupFilters(restorable, configuration_id)


FILTERS = {"filters": Provide(backup_filters, sync_to_thread=False)}
Filters = NamedDependency[BackupFilters]
BACKUPS = RunResource("backup", BackupOut, backup_out, ErrorListOut, error_list_out, BACKUP_PATCH)


class BackupController(RunController, resource=BACKUPS):
    """B1 and B2 here; B3/B4, ER1 and EV5 are every run resource's (``RunController``)."""

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

    @get("/", sync_to_thread=True, dependencies=FILTERS)
    def list_backups(
        self, call: Call, backups: Backups, paging: Paging, filters: Filters
    ) -> BackupList:
        items, links = paged_rows(
            call,
            ("backups",),
            backups.page,
            backup_out,
            paging,
            filters=filters.given(),
            restorable=boolean("restorable", filters.restorable),
            configuration_id=filters.configuration_id,
        )
        return BackupList(backups=items, links=links)
