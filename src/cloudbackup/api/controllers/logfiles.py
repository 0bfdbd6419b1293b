"""Log uploads: A12-A16 (spec §8.2, §14.5)."""

from __future__ import annotations

from litestar import Controller, Response, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import RawBody
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from cloudbackup.api.auth import reporting_agent
from cloudbackup.api.call import AgentHeader, Call, Id
from cloudbackup.api.schemas.logfiles import (
    LogfileList,
    LogfileOut,
    logfile_out,
    parse_logfile_patch,
    upload_href,
)
from cloudbackup.domain.logfiles import LOG_CONTAINER, LogfileService

Logfiles = NamedDependency[LogfileService]


class LogfileController(Controller):
    path = "/v2/{project_id:str}/agents/{agent_id:str}/logfiles"

    @post("/", status_code=HTTP_202_ACCEPTED, sync_to_thread=True)
    def request_logfile(self, call: Call, agent_id: Id, logfiles: Logfiles) -> Response[LogfileOut]:
        """No request body; 202 with the new logfile and its ``Location``."""
        row = logfiles.request(
            call.project_id, agent_id, lambda agent, name: upload_href(call.links, agent, name)
        )
        return call.accepted(
            logfile_out(row, call.links), "agents", row.agent_id, "logfiles", row.id
        )

    @get("/", sync_to_thread=True)
    def list_logfiles(self, call: Call, agent_id: Id, logfiles: Logfiles) -> LogfileList:
        rows = logfiles.list(call.project_id, agent_id)
        return LogfileList([logfile_out(row, call.links) for row in rows])

    @get("/{logfile_id:str}", sync_to_thread=True)
    def get_logfile(
        self, call: Call, agent_id: Id, logfile_id: Id, logfiles: Logfiles
    ) -> LogfileOut:
        return logfile_out(logfiles.get(call.project_id, agent_id, logfile_id), call.links)

    @patch("/{logfile_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def update_logfile(
        self,
        call: Call,
        agent_id: Id,
        logfile_id: Id,
        body: RawBody,
        logfiles: Logfiles,
        x_agent_id: AgentHeader = None,
    ) -> None:
        state = parse_logfile_patch(call.request, body)
        # X-Agent-Id stays documented; the guard checks it names the token's agent.
        reporter = reporting_agent(call.request)
        logfiles.report(call.project_id, agent_id, logfile_id, state, reporter)

    @delete("/{logfile_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def delete_logfile(self, call: Call, agent_id: Id, logfile_id: Id, logfiles: Logfiles) -> None:
        logfiles.delete(call.project_id, agent_id, logfile_id)


class LogContentController(Controller):
    """The logfile's link (``rel: logfile``): where the agent puts its log and users fetch it.
    The path is the spec's object name, ``CloudBackupLogs/v2/{agent_id}/{date}.gz``."""

    path = "/v2/{project_id:str}/agents/{agent_id:str}/vault/CloudBackupLogs"

    @get("/{name:path}", media_type="application/gzip", sync_to_thread=True)
    def download_log(self, call: Call, agent_id: Id, name: Id, logfiles: Logfiles) -> bytes:
        """The uploaded log (gzip), once its logfile is completed; 404 before."""
        return logfiles.content(call.project_id, agent_id, f"{LOG_CONTAINER}{name}")

    @put("/{name:path}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def upload_log(
        self, call: Call, agent_id: Id, name: Id, body: RawBody, logfiles: Logfiles
    ) -> None:
        """A remote agent's upload of its log (gzip), with its own token (A9)."""
        object_name = f"{LOG_CONTAINER}{name}"
        reporter = reporting_agent(call.request)
        logfiles.store_upload(call.project_id, agent_id, object_name, body, reporter)
