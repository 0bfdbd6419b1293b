"""Browsing: B5/B6 (a backup's files) and A10/A11 (the agent's host), spec §3, §8, §2.7.

A request answers 202 at once with the `Location` of its result: the real, plural route (OQ-14),
which is 404 until a worker has answered, then the result for ``browse_result_seconds``.
"""

from __future__ import annotations

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, RawBody
from litestar.status_codes import HTTP_202_ACCEPTED

from cloudbackup.api.call import Call
from cloudbackup.api.schemas.browse import (
    BrowseResultOut,
    browse_result_out,
    parse_backup_browse,
    parse_host_browse,
)
from cloudbackup.domain.browse import BrowseService

Browse = NamedDependency[BrowseService]
Id = FromPath[str]


class BrowseController(Controller):
    path = "/v2/{project_id:str}"

    @post(
        "/backups/{backup_id:str}/browse-requests",
        status_code=HTTP_202_ACCEPTED,
        sync_to_thread=True,
    )
    def browse_backup(
        self, call: Call, backup_id: Id, body: RawBody, browse: Browse
    ) -> Response[bytes]:
        asked = parse_backup_browse(call.request, body)
        request_id = browse.ask_backup(call.project_id, backup_id, asked)
        return call.accepted_empty("backups", backup_id, "browse-requests", request_id)

    @get("/backups/{backup_id:str}/browse-requests/{request_id:str}", sync_to_thread=True)
    def backup_browsed(
        self, call: Call, backup_id: Id, request_id: Id, browse: Browse
    ) -> BrowseResultOut:
        return browse_result_out(browse.backup_result(call.project_id, backup_id, request_id))

    @post(
        "/agents/{agent_id:str}/browse-requests",
        status_code=HTTP_202_ACCEPTED,
        sync_to_thread=True,
    )
    def browse_host(
        self, call: Call, agent_id: Id, body: RawBody, browse: Browse
    ) -> Response[bytes]:
        asked = parse_host_browse(call.request, body)
        request_id = browse.ask_host(call.project_id, agent_id, asked)
        return call.accepted_empty("agents", agent_id, "browse-requests", request_id)

    @get("/agents/{agent_id:str}/browse-requests/{request_id:str}", sync_to_thread=True)
    def host_browsed(
        self, call: Call, agent_id: Id, request_id: Id, browse: Browse
    ) -> BrowseResultOut:
        return browse_result_out(browse.host_result(call.project_id, agent_id, request_id))
