"""Browsing: B5/B6 (a backup's files) and A10/A11 (the agent's host), spec §3, §8, §2.7.

A request answers 202 at once with the `Location` of its result: the real, plural route (OQ-14),
which is 404 until a worker has answered, then the result for ``browse_result_seconds``.
"""

from __future__ import annotations

from litestar import Controller, Response, get, post, put
from litestar.di import NamedDependency
from litestar.params import RawBody
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from cloudbackup.api.auth import reporting_agent
from cloudbackup.api.call import Call, Id
from cloudbackup.api.schemas.browse import (
    BrowseResultOut,
    browse_result_out,
    parse_agent_answer,
    parse_backup_browse,
    parse_host_browse,
)
from cloudbackup.domain.auth import Permission
from cloudbackup.domain.browse import BrowseService

Browse = NamedDependency[BrowseService]


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

    @put(
        "/agents/{agent_id:str}/browse-requests/{request_id:str}/result",
        status_code=HTTP_204_NO_CONTENT,
        sync_to_thread=True,
        opt={"permission": Permission.UPDATE},
    )
    def agent_answered(
        self, call: Call, agent_id: Id, request_id: Id, body: RawBody, browse: Browse
    ) -> None:
        """A remote agent's answer to a request handed to it (an extension of the API)."""
        answer = parse_agent_answer(call.request, body)
        browse.answer_from_agent(
            call.project_id, agent_id, reporting_agent(call.request), request_id, answer
        )
