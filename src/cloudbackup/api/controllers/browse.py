"""Browsing: B5/B6 (a backup's files) and A10/A11 (the agent's host), spec §3, §8, §2.7.

A request answers 202 at once with the `Location` of its result: the real, plural route (OQ-14),
which is 404 until a worker has answered, then the result for ``browse_result_seconds``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from litestar import Controller, MediaType, Request, Response, get, post, put
from litestar.di import NamedDependency
from litestar.params import RawBody
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from cloudbackup.api.auth import NEEDS_UPDATE, reporting_agent
from cloudbackup.api.call import ApiCall, Call, Id
from cloudbackup.api.schemas.browse import (
    BrowseResultOut,
    browse_result_out,
    parse_agent_answer,
    parse_backup_browse,
    parse_host_browse,
)
from cloudbackup.domain.browse import BrowseService

Browse = NamedDependency[BrowseService]
AskedT = TypeVar("AskedT")
# The 202 is empty text/plain (``accepted_empty``): the media type documents it as such.
ASKED: dict[str, Any] = {
    "status_code": HTTP_202_ACCEPTED,
    "sync_to_thread": True,
    "media_type": MediaType.TEXT,
}


def _accepted(
    call: ApiCall,
    body: bytes,
    owner: tuple[str, str],
    parse: Callable[[Request[Any, Any, Any], bytes], AskedT],
    ask: Callable[[str, str, AskedT], str],
) -> Response[bytes]:
    """Hand the request ``body`` says to ``ask`` for ``owner`` (a backup or a host), then 202
    with the ``Location`` of its result."""
    request_id = ask(call.project_id, owner[1], parse(call.request, body))
    return call.accepted_empty(*owner, "browse-requests", request_id)


class BrowseController(Controller):
    path = "/v2/{project_id:str}"

    # B5 and A10 ask; B6 and A11 read the answer at the Location they gave.
    @post("/backups/{backup_id:str}/browse-requests", **ASKED)
    def browse_backup(
        self, call: Call, backup_id: Id, body: RawBody, browse: Browse
    ) -> Response[bytes]:
        return _accepted(call, body, ("backups", backup_id), parse_backup_browse, browse.ask_backup)

    @post("/agents/{agent_id:str}/browse-requests", **ASKED)
    def browse_host(
        self, call: Call, agent_id: Id, body: RawBody, browse: Browse
    ) -> Response[bytes]:
        return _accepted(call, body, ("agents", agent_id), parse_host_browse, browse.ask_host)

    @get("/backups/{backup_id:str}/browse-requests/{request_id:str}", sync_to_thread=True)
    def backup_browsed(
        self, call: Call, backup_id: Id, request_id: Id, browse: Browse
    ) -> BrowseResultOut:
        return browse_result_out(browse.backup_result(call.project_id, backup_id, request_id))

    @get("/agents/{agent_id:str}/browse-requests/{request_id:str}", sync_to_thread=True)
    def host_browsed(
        self, call: Call, agent_id: Id, request_id: Id, browse: Browse
    ) -> BrowseResultOut:
        return browse_result_out(browse.host_result(call.project_id, agent_id, request_id))

    @put(
        "/agents/{agent_id:str}/browse-requests/{request_id:str}/result",
        status_code=HTTP_204_NO_CONTENT,
        sync_to_thread=True,
        opt=NEEDS_UPDATE,
    )
    def agent_answered(
        self, call: Call, agent_id: Id, request_id: Id, body: RawBody, browse: Browse
    ) -> None:
        """A remote agent's answer to a request handed to it (an extension of the API)."""
        answer = parse_agent_answer(call.request, body)
        browse.answer_from_agent(
            call.project_id, agent_id, reporting_agent(call.request), request_id, answer
        )
