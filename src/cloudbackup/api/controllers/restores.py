"""Restores: R1-R4, ER2 and EV6 (spec §4, §6, §10)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, HeaderParameter, QueryParameter, RawBody
from litestar.status_codes import HTTP_201_CREATED

from cloudbackup.api.controllers.runs import RunResource, run_handlers
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.paging import paged_list
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
    def start_restore(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        body: RawBody,
        restores: Restores,
    ) -> Response[RestoreOut]:
        row = restores.start(project_id, parse_start(request, body))
        links = LinkBuilder(request, project_id)
        return Response(
            restore_out(row, links),
            status_code=HTTP_201_CREATED,
            headers={"Location": links.href("restores", row.id)},
        )

    @get("/", sync_to_thread=True)
    def list_restores(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        restores: Restores,
        marker: Query = None,
        limit: Query = None,
        sort_dir: Query = None,
    ) -> RestoreList:
        items, links = paged_list(
            request,
            project_id,
            ("restores",),
            lambda size, order: restores.page(
                project_id, marker=marker, limit=size, sort_dir=order
            ),
            lambda row, links: restore_out(row, links, detail=False),
            marker=marker,
            limit=limit,
            sort_dir=sort_dir,
        )
        return RestoreList(restores=items, links=links)
