"""The event channel of a remote agent: the ports ``queue`` implements (per-agent streams).

Workers push work items (:class:`AgentChannel`, in ``domain.channel_push`` with the
``configuration_changed`` item, re-exported here); the API reads them for the agent's long poll
(:class:`AgentChannelReader`). An item is a small JSON object; its ``marker`` orders it in the
agent's channel, and the agent asks for what follows the last marker it handled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import anyio.to_thread
import sqlalchemy as sa
from sqlmodel import col

from cloudbackup.domain.agents import live_agent
from cloudbackup.domain.channel_push import DOCUMENT_CHANGED as DOCUMENT_CHANGED
from cloudbackup.domain.channel_push import AgentChannel as AgentChannel
from cloudbackup.domain.channel_push import is_remote as is_remote
from cloudbackup.domain.channel_push import tell_document_changed as tell_document_changed
from cloudbackup.domain.errors import Forbidden, InvalidInput, Unavailable
from cloudbackup.store.db import Database
from cloudbackup.store.tables import Agent

log = logging.getLogger("cloudbackup.agents")

# The marker before every item: an agent that never read its channel starts here.
FIRST_MARKER = "0"


@dataclass(frozen=True, slots=True)
class ChannelItem:
    """One item of an agent's channel and its place in it."""

    marker: str
    item: dict[str, Any]


class AgentChannelReader(Protocol):
    """What the API needs to serve an agent's long poll."""

    async def read(
        self, agent_id: str, marker: str, wait_seconds: float, limit: int
    ) -> list[ChannelItem]:
        """The items after ``marker``, waiting up to ``wait_seconds`` for the first one."""
        ...

    def valid_marker(self, marker: str) -> bool:
        """Whether ``marker`` is one this channel could have handed out."""
        ...


# -- the API side: who may read a channel -------------------------------------------------------

NOT_THIS_AGENT = "Only the agent itself may use its event channel and its vault objects."
NO_CHANNEL = "The event channel is not available here (the API has no Redis broker)."
MAX_WAIT_SECONDS = 60
MAX_ITEMS = 100


def check_own_agent(db: Database, project_id: str, agent_id: str, caller: str | None) -> Agent:
    """The live agent ``agent_id`` when the caller's token is that agent's (403 otherwise)."""
    if caller != agent_id:
        raise Forbidden(NOT_THIS_AGENT)
    with db.read() as session:
        return live_agent(session, project_id, agent_id)


def mark_remote(db: Database, agent_id: str) -> bool:
    """Record that the agent serves itself from its host; True when it was hosted until now."""
    with db.transaction() as session:
        result = session.execute(
            sa.update(Agent)
            .where(col(Agent.id) == agent_id, col(Agent.remote).is_(False))
            .values(remote=True)
        )
    changed = bool(getattr(result, "rowcount", 0))
    if changed:
        log.info("agent %s is remote from now on: its runs go to its event channel", agent_id)
    return changed


class ChannelService:
    """The long poll of an agent's channel (an extension of the API): only the agent's own
    token reads it, and reading it makes the agent remote."""

    def __init__(self, db: Database, reader: AgentChannelReader | None) -> None:
        self.db = db
        self.reader = reader

    async def next_items(
        self, project_id: str, agent_id: str, caller: str | None, marker: str, wait: float
    ) -> list[ChannelItem]:
        if self.reader is None:
            raise Unavailable(NO_CHANNEL)
        await anyio.to_thread.run_sync(check_own_agent, self.db, project_id, agent_id, caller)
        if not self.reader.valid_marker(marker):
            raise InvalidInput("Validation failed.", [f"marker {marker[:40]!r} is not a marker."])
        await anyio.to_thread.run_sync(mark_remote, self.db, agent_id)
        return await self.reader.read(agent_id, marker, min(wait, MAX_WAIT_SECONDS), MAX_ITEMS)
