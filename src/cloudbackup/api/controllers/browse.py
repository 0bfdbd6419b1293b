"""Browsing: B5/B6 (a backup's files) and A10/A11 (the agent's host), spec §3, §8, §2.7.

A request answers 202 at once with the `Location` of its result: the real, plural route (OQ-14),
which is 404 until a worker has answered, then the result for ``browse_result_seconds``.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, RawBody
from litestar.status_codes import HTTP_202_ACCEPTED

from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.schemas.browse import (
    BrowseResultOut,
    browse_result_out,
    parse_backup_browse,
    parse_host_browse,
)
from cloudbackup.domain.browse import BrowseService

Browse = NamedDependency[BrowseService]


def _accepted(
    request: Request[Any, Any, Any], project_id: str, parent: tuple[str, str], request_id: str
) -> Response[bytes]:
    """202 with no body and the `Location` of the result of ``parent``'s (a backup's or an
    agent's) browse request ``request_id`` (spec §2.7)."""
    location = LinkBuilder(request, project_id).href(*parent, "browse-requests", request_id)
    return Response(
        b"",
        status_code=HTTP_202_ACCEPTED,
        headers={"Location": location},
        media_type=MediaType.TEXT,
    )


class BrowseController(Controller):
    path = "/v2/{project_id:str}"

    @post(
        "/backups/{backup_id:str}/browse-requests",
        status_code=HTTP_202_ACCEPTED,
        sync_to_thread=True,
    )
    def browse_backup(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        backup_id: FromPath[str],
        body: RawBody,
        browse: Browse,
    ) -> Response[bytes]:
        request_id = browse.ask_backup(project_id, backup_id, parse_backup_browse(request, body))
        return _accepted(request, project_id, ("backups", backup_id), request_id)

    @get("/backups/{backup_id:str}/browse-requests/{request_id:str}", sync_to_thread=True)
    def backup_browsed(
        self,
        project_id: FromPath[str],
        backup_id: FromPath[str],
        request_id: FromPath[str],
        browse: Browse,
    ) -> BrowseResultOut:
        return browse_result_out(browse.backup_result(project_id, backup_id, request_id))

    @post(
        "/agents/{agent_id:str}/browse-requests",
        status_code=HTTP_202_ACCEPTED,
        sync_to_thread=True,
    )
    def browse_host(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        agent_id: FromPath[str],
        body: RawBody,
        browse: Browse,
    ) -> Response[bytes]:
        request_id = browse.ask_host(project_id, agent_id, parse_host_browse(request, body))
        return _accepted(request, project_id, ("agents", agent_id), request_id)

    @get("/agents/{agent_id:str}/browse-requests/{request_id:str}", sync_to_thread=True)
    def host_browsed(
        self,
        project_id: FromPath[str],
        agent_id: FromPath[str],
        request_id: FromPath[str],
        browse: Browse,
    ) -> BrowseResultOut:
        return browse_result_out(browse.host_result(project_id, agent_id, request_id))
