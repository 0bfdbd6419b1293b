"""A6 status and A7 working document (spec §8)."""

from __future__ import annotations

from typing import Any

import msgspec

from cloudbackup.api.links import LinkBuilder
from cloudbackup.domain.agent_document import AgentDocument, system_preferences


class AgentStatusOut(msgspec.Struct):
    busy: bool
    online: bool


def agent_document_out(document: AgentDocument, links: LinkBuilder, host: str) -> dict[str, Any]:
    """A7: the agent's event channel is its long poll, ``/agents/{agent_id}/channel`` (an
    extension fed by the workers; docs/decisions.md, "Remote agents")."""
    agent = document.agent
    vault = ("agents", agent.id, "vault")
    channel = links.href("agents", agent.id, "channel")[len(host) :]
    return {
        "system_preferences": system_preferences(agent.log_level, host, channel),
        "vaults": [
            {
                "id": agent.vault_id,
                "use_internal": agent.vault_use_internal,
                "encrypted": agent.vault_encrypted,
                "links": [
                    {"href": links.href(*vault), "rel": rel}
                    for rel in ("publicURL", "internalURL", "data_services")
                ],
            }
        ],
        "configurations": document.configurations,
    }
