"""The agents page: every agent of the project and how many configurations back it up."""

from __future__ import annotations

from litestar import Controller, Response, get

from cloudbackup.client import format as fmt
from cloudbackup.console.views import AnyRequest, LoggedIn, api_for, view


class AgentPages(Controller):
    @get("/agents")
    async def agents(self, request: AnyRequest, user: LoggedIn) -> Response[str]:
        async with api_for(request, user) as api:
            agents = (await api.list_agents())["agents"]
            configs = (await api.list_configurations())["configurations"]
        per_agent: dict[str, int] = {}
        for config in configs:
            agent_id = fmt.ref_id(config.get("agent")) or ""
            per_agent[agent_id] = per_agent.get(agent_id, 0) + 1
        return view(
            request, user, "agents.html", active="agents", agents=agents, per_agent=per_agent
        )
