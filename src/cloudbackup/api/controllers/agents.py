"""Agents: A1-A8 (spec §8, §9.1)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import RawBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from cloudbackup.api.body import convert_value, decode_patch
from cloudbackup.api.call import Call, Id, Query
from cloudbackup.api.schemas.agent_status import AgentStatusOut, agent_document_out
from cloudbackup.api.schemas.agents import (
    AgentList,
    AgentOut,
    AgentTokenOut,
    agent_out,
    agent_token_out,
    parse_login,
    parse_registration,
)
from cloudbackup.api.schemas.configurations import ConfigurationList, configuration_list
from cloudbackup.api.service_types import Configurations, Events, Health
from cloudbackup.domain.agent_document import AgentDocumentService
from cloudbackup.domain.agents import AgentService, AgentTokenService, AgentUpdate
from cloudbackup.domain.errors import InvalidInput

Agents = NamedDependency[AgentService]

# path -> (AgentUpdate field, type of the value); OQ-22: `/log-level` is not accepted.
PATCH_PATHS: dict[str, tuple[str, type[Any]]] = {
    "/enabled": ("enabled", bool),
    "/vault/region": ("vault_region", str),
    "/vault/use_internal": ("vault_use_internal", bool),
    "/log_level": ("log_level", str),
}


class AgentController(Controller):
    path = "/v2/{project_id:str}/agents"

    @post("/tokens", status_code=HTTP_200_OK, opt={"public": True}, sync_to_thread=True)
    def agent_token(
        self, call: Call, body: RawBody, agent_tokens: NamedDependency[AgentTokenService]
    ) -> AgentTokenOut:
        """A9: the agent's id, password and host fingerprint buy a token (no X-Auth-Token)."""
        login = parse_login(call.request, body)
        return agent_token_out(agent_tokens.issue(call.project_id, login))

    @post("/", status_code=HTTP_201_CREATED, sync_to_thread=True)
    def register_agent(self, call: Call, body: RawBody, agents: Agents) -> Response[AgentOut]:
        row, password = agents.register(call.project_id, parse_registration(call.request, body))
        return call.created(agent_out(row, call.links, password), "agents", row.id)

    @get("/", sync_to_thread=True)
    def list_agents(self, call: Call, agents: Agents, host_machine_id: Query = None) -> AgentList:
        rows = agents.list_project(call.project_id, host_machine_id)
        return AgentList([agent_out(row, call.links) for row in rows])

    @get("/{agent_id:str}", sync_to_thread=True)
    def get_agent(self, call: Call, agent_id: Id, agents: Agents) -> AgentOut:
        return agent_out(agents.get(call.project_id, agent_id), call.links)

    @patch("/{agent_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def update_agent(self, call: Call, agent_id: Id, body: RawBody, agents: Agents) -> None:
        agents.update(call.project_id, agent_id, parse_agent_patch(call.request, body))

    @delete("/{agent_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def delete_agent(self, call: Call, agent_id: Id, agents: Agents) -> None:
        agents.delete(call.project_id, agent_id)

    @get("/{agent_id:str}/configurations", sync_to_thread=True)
    def list_agent_configurations(
        self, call: Call, agent_id: Id, configurations: Configurations
    ) -> ConfigurationList:
        rows = configurations.list_for_agent(call.project_id, agent_id)
        return configuration_list(rows, call.links)

    @get("/{agent_id:str}/status", sync_to_thread=True)
    def agent_status(
        self,
        call: Call,
        agent_id: Id,
        events: Events,
        health: Health,
    ) -> AgentStatusOut:
        """A6 (OQ-41): busy and online; see ``EventStreamService.status``."""
        status = events.status(call.project_id, agent_id, lambda: health.workers_online(agent_id))
        return AgentStatusOut(busy=status.busy, online=status.online)

    @get("/{agent_id:str}/configuration", sync_to_thread=True)
    def agent_configuration(
        self, call: Call, agent_id: Id, agent_documents: NamedDependency[AgentDocumentService]
    ) -> dict[str, Any]:
        """A7: the agent's working document."""
        document = agent_documents.document(call.project_id, agent_id)
        host = str(call.request.base_url).rstrip("/")
        return agent_document_out(document, call.links, host)


def parse_agent_patch(request: Request[Any, Any, Any], body: bytes) -> AgentUpdate:
    """Turn an A4 JSON Patch into an ``AgentUpdate``; unknown paths and bad values are 400s."""
    values: dict[str, Any] = {}
    for op in decode_patch(request, body, frozenset({"replace", "add"})):
        if op.path not in PATCH_PATHS:
            raise InvalidInput(
                "Validation failed.",
                [f"{op.path} cannot be changed; writable paths are {', '.join(PATCH_PATHS)}."],
            )
        field, type_ = PATCH_PATHS[op.path]
        values[field] = convert_value(op.value, type_, op.path)
    return AgentUpdate(**values)
