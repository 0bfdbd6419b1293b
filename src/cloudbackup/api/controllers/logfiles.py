"""Log uploads: A12-A16 (spec §8.2, §14.5)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, RawBody
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from cloudbackup.api.auth import reporting_agent
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.schemas.logfiles import (
    LogfileList,
    LogfileOut,
    logfile_out,
    parse_logfile_patch,
    upload_href,
)
from cloudbackup.domain.logfiles import LogfileService

AgentHeader = Annotated[str | None, HeaderParameter(name="X-Agent-Id", required=False)]
Logfiles = NamedDependency[LogfileService]


class LogfileController(Controller):
    path = "/v2/{project_id:str}/agents/{agent_id:str}/logfiles"

    @post("/", status_code=HTTP_202_ACCEPTED, sync_to_thread=True)
    def request_logfile(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        agent_id: FromPath[str],
        logfiles: Logfiles,
    ) -> Response[LogfileOut]:
        """No request body; 202 with the new logfile and its ``Location``."""
        links = LinkBuilder(request, project_id)
        row = logfiles.request(
            project_id, agent_id, lambda agent, name: upload_href(links, agent, name)
        )
        return Response(
            logfile_out(row, links),
            status_code=HTTP_202_ACCEPTED,
            headers={"Location": links.href("agents", row.agent_id, "logfiles", row.id)},
        )

    @get("/", sync_to_thread=True)
    def list_logfiles(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        agent_id: FromPath[str],
        logfiles: Logfiles,
    ) -> LogfileList:
        links = LinkBuilder(request, project_id)
        return LogfileList([logfile_out(row, links) for row in logfiles.list(project_id, agent_id)])

    @get("/{logfile_id:str}", sync_to_thread=True)
    def get_logfile(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        agent_id: FromPath[str],
        logfile_id: FromPath[str],
        logfiles: Logfiles,
    ) -> LogfileOut:
        row = logfiles.get(project_id, agent_id, logfile_id)
        return logfile_out(row, LinkBuilder(request, project_id))

    @patch("/{logfile_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def update_logfile(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        agent_id: FromPath[str],
        logfile_id: FromPath[str],
        body: RawBody,
        logfiles: Logfiles,
        x_agent_id: AgentHeader = None,
    ) -> None:
        state = parse_logfile_patch(request, body)
        # X-Agent-Id stays documented; the guard checks it names the token's agent.
        logfiles.report(project_id, agent_id, logfile_id, state, reporting_agent(request))

    @delete("/{logfile_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def delete_logfile(
        self,
        project_id: FromPath[str],
        agent_id: FromPath[str],
        logfile_id: FromPath[str],
        logfiles: Logfiles,
    ) -> None:
        logfiles.delete(project_id, agent_id, logfile_id)
