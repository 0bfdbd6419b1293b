"""Cleanups: C1-C4, ER3 and EV7 (spec §5, §6, §10)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, HeaderParameter, QueryParameter, RawBody
from litestar.status_codes import HTTP_201_CREATED

from cloudbackup.api.controllers.runs import RunResource, run_handlers
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


CLEANUPS = RunResource(
    noun="cleanup",
    plural="cleanups",
    out_type=CleanupOut,
    out=cleanup_out,
    errors_type=CleanupErrorListOut,
    errors_out=cleanup_errors_out,
    patch=CLEANUP_PATCH,
)


def _runs(cleanups: Cleanups) -> CleanupService:
    return cleanups


class CleanupController(Controller):
    path = "/v2/{project_id:str}/cleanups"
    dependencies = {"runs": Provide(_runs, sync_to_thread=False)}
    # B3/R3/C3 read, PATCH, errors and events: the same for every run resource.
    get_cleanup, update_cleanup, list_errors, list_events = run_handlers(CLEANUPS)

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
