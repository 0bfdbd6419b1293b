"""Cleanups: C1-C4, ER3 and EV7 (spec §5, §6, §10)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, QueryParameter, RawBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from cloudbackup.api.controllers.events import run_event_list
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.paging import paged_list
from cloudbackup.api.schemas.cleanups import (
    CLEANUP_PATCH,
    CleanupErrorListOut,
    CleanupList,
    CleanupOut,
    cleanup_errors_out,
    cleanup_out,
    parse_start,
)
from cloudbackup.domain.cleanups import CleanupService

AgentHeader = Annotated[str | None, HeaderParameter(name="X-Agent-Id", required=False)]
Query = Annotated[str | None, QueryParameter(required=False)]
Cleanups = NamedDependency[CleanupService]


class CleanupController(Controller):
    path = "/v2/{project_id:str}/cleanups"

    @post("/", status_code=HTTP_201_CREATED, sync_to_thread=True)
    def start_cleanup(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        body: RawBody,
        cleanups: Cleanups,
        x_agent_id: AgentHeader = None,
    ) -> Response[CleanupOut]:
        data = parse_start(request, body)
        row = cleanups.start(project_id, data.agent_id, data.state, x_agent_id)
        links = LinkBuilder(request, project_id)
        return Response(
            cleanup_out(row, links),
            status_code=HTTP_201_CREATED,
            headers={"Location": links.href("cleanups", row.id)},
        )

    @get("/", sync_to_thread=True)
    def list_cleanups(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        cleanups: Cleanups,
        marker: Query = None,
        limit: Query = None,
        sort_dir: Query = None,
    ) -> CleanupList:
        items, links = paged_list(
            request,
            project_id,
            ("cleanups",),
            lambda size, order: cleanups.page(
                project_id, marker=marker, limit=size, sort_dir=order
            ),
            cleanup_out,
            marker=marker,
            limit=limit,
            sort_dir=sort_dir,
        )
        return CleanupList(cleanups=items, links=links)

    @get("/{cleanup_id:str}", sync_to_thread=True)
    def get_cleanup(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        cleanup_id: FromPath[str],
        cleanups: Cleanups,
    ) -> CleanupOut:
        return cleanup_out(cleanups.get(project_id, cleanup_id), LinkBuilder(request, project_id))

    @patch("/{cleanup_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def update_cleanup(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        cleanup_id: FromPath[str],
        body: RawBody,
        cleanups: Cleanups,
        x_agent_id: AgentHeader = None,
    ) -> None:
        cleanups.update(project_id, cleanup_id, CLEANUP_PATCH.parse(request, body), x_agent_id)

    @get("/{cleanup_id:str}/errors", sync_to_thread=True)
    def list_errors(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        cleanup_id: FromPath[str],
        cleanups: Cleanups,
    ) -> CleanupErrorListOut:
        row, items = cleanups.errors(project_id, cleanup_id)
        return cleanup_errors_out(row, items, LinkBuilder(request, project_id))

    @get("/{cleanup_id:str}/events", sync_to_thread=True)
    def list_events(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        cleanup_id: FromPath[str],
        cleanups: Cleanups,
        marker: Query = None,
        limit: Query = None,
        sort_dir: Query = None,
    ) -> dict[str, Any]:
        return run_event_list(
            request,
            project_id,
            ("cleanups", cleanup_id, "events"),
            lambda after, size, direction: cleanups.events(
                project_id, cleanup_id, marker=after, limit=size, sort_dir=direction
            ),
            marker,
            limit,
            sort_dir,
        )
