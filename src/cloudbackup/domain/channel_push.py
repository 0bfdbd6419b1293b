"""What services and workers push to a remote agent's event channel, apart from reading it
(``domain.agent_channel``): the port, and the ``configuration_changed`` item every change of an
agent's working document (A7) sends after its commit. It imports no other domain module, so
``domain.agents`` (which ``agent_channel`` imports) can tell the agent too."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import sqlalchemy as sa
from sqlmodel import col

from cloudbackup.store.db import Database
from cloudbackup.store.tables import Agent

log = logging.getLogger("cloudbackup.agents")


class AgentChannel(Protocol):
    """What a worker needs to hand work to a remote agent."""

    def push(self, agent_id: str, item: dict[str, Any]) -> bool:
        """Append ``item`` to the agent's channel; False if the channel could not be reached."""
        ...


# The item telling a remote agent that its working document (A7) changed: it reads A7 again.
DOCUMENT_CHANGED = "configuration_changed"


def is_remote(db: Database, agent_id: str) -> bool:
    """Whether the agent runs on its own host and is reached through its channel."""
    with db.read() as session:
        remote = session.execute(
            sa.select(col(Agent.remote)).where(col(Agent.id) == agent_id)
        ).scalar_one_or_none()
    return bool(remote)


def tell_document_changed(
    db: Database, channel: AgentChannel | None, agent_id: str, **members: str
) -> bool:
    """After the commit of a change to the agent's working document: push a small
    ``configuration_changed`` item to a remote agent's channel (hosted agents read A7 from the
    database, and a remote one that never read its channel reads A7 when it starts). Best
    effort: an item that does not reach the channel is logged, and the agent re-reads A7 on
    its own every few minutes anyway."""
    if channel is None or not is_remote(db, agent_id):
        return False
    item = {"type": DOCUMENT_CHANGED, "agent": {"id": agent_id}, **members}
    if channel.push(agent_id, item):
        return True
    log.warning("agent %s was not told that its configurations changed", agent_id)
    return False
