"""Restores: R1-R4, ER2 and EV6 (spec §4, §6, §10)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, QueryParameter, RawBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from cloudbackup.api.body import page_limit, sort_direction
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.paging import page_links
from cloudbackup.api.schemas.events import event_out
from cloudbackup.api.schemas.restores import (
    RestoreList,
    RestoreOut,
    parse_patch,
    parse_start,
    restore_errors_out,
    restore_out,
)
from cloudbackup.domain.errors import InvalidInput
from cloudbackup.domain.restores import RestoreService
from cloudbackup.store.repositories import Page, SortDir
from cloudbackup.store.tables import Event

AgentHeader = Annotated[str | None, HeaderParameter(name="X-Agent-Id", required=False)]
Query = Annotated[str | None, QueryParameter(required=False)]
Restores = NamedDependency[RestoreService]


def event_list(
    request: Request[Any, Any, Any],
    project_id: str,
    parts: tuple[str, ...],
    fetch: Callable[[int | None, int, SortDir], Page[Event]],
    marker: str | None,
    limit: str | None,
    sort_dir: str | None,
) -> dict[str, Any]:
    """An EV6/EV7 page: events after ``marker`` (an event id) in ``sort_dir`` (default asc)."""
    size = page_limit(limit)
    direction = sort_direction(sort_dir, "asc")
    if marker is not None and not marker.isdigit():
        raise InvalidInput("Validation failed.", ["marker must be an event id (digits)."])
    page = fetch(int(marker) if marker else None, size, direction)  # type: ignore[arg-type]
    return {
        "events": [event_out(row) for row in page.items],
        "links": page_links(
            LinkBuilder(request, project_id),
            parts,
            first_id=str(page.items[0].id) if page.items else None,
            last_id=str(page.items[-1].id) if page.items else None,
            has_more=page.has_more,
            marker_given=marker is not None,
            limit=size,
            sort_dir=direction,
            default_sort_dir="asc",
        ),
    }


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
        size = page_limit(limit)
        direction = sort_direction(sort_dir, "desc")
        page = restores.page(
            project_id,
            marker=marker,
            limit=size,
            sort_dir=direction,  # type: ignore[arg-type]
        )
        links = LinkBuilder(request, project_id)
        return RestoreList(
            restores=[restore_out(row, links, detail=False) for row in page.items],
            links=page_links(
                links,
                ("restores",),
                first_id=page.items[0].id if page.items else None,
                last_id=page.items[-1].id if page.items else None,
                has_more=page.has_more,
                marker_given=marker is not None,
                limit=size,
                sort_dir=direction,
                default_sort_dir="desc",
            ),
        )

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
        restores.update(project_id, restore_id, parse_patch(request, body), x_agent_id)

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
        return event_list(
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
