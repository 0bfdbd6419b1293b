"""Restores: R1-R4, ER2 and EV6 (spec §4, §6, §10)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, QueryParameter, RawBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from cloudbackup.api.controllers.events import run_event_list
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


class RestoreController(Controller):
    path = "/v2/{project_id:str}/restores"

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

    @get("/{restore_id:str}", sync_to_thread=True)
    def get_restore(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        restore_id: FromPath[str],
        restores: Restores,
    ) -> RestoreOut:
        return restore_out(restores.get(project_id, restore_id), LinkBuilder(request, project_id))

    @patch("/{restore_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def update_restore(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        restore_id: FromPath[str],
        body: RawBody,
        restores: Restores,
        x_agent_id: AgentHeader = None,
    ) -> None:
        restores.update(project_id, restore_id, RESTORE_PATCH.parse(request, body), x_agent_id)

    @get("/{restore_id:str}/errors", sync_to_thread=True)
    def list_errors(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        restore_id: FromPath[str],
        restores: Restores,
    ) -> dict[str, Any]:
        row, items = restores.errors(project_id, restore_id)
        return restore_errors_out(row, items, LinkBuilder(request, project_id))

    @get("/{restore_id:str}/events", sync_to_thread=True)
    def list_events(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        restore_id: FromPath[str],
        restores: Restores,
        marker: Query = None,
        limit: Query = None,
        sort_dir: Query = None,
    ) -> dict[str, Any]:
        return run_event_list(
            request,
            project_id,
            ("restores", restore_id, "events"),
            lambda after, size, direction: restores.events(
                project_id, restore_id, marker=after, limit=size, sort_dir=direction
            ),
            marker,
            limit,
            sort_dir,
        )
