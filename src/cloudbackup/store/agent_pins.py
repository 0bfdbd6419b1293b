"""Agents pinned to their own queues (``agent_queues``): `cloudbackup agents pin/unpin`."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from cloudbackup.store.db import Database, rowcount
from cloudbackup.store.tables import AGENT_QUEUES, AGENTS, utcnow


def pinned_agents(db: Database) -> frozenset[str]:
    with db.transaction() as session:
        return frozenset(session.execute(sa.select(AGENT_QUEUES.c.agent_id)).scalars())


def pin_agent(db: Database, agent_id: str) -> bool:
    """Route the agent's work to its own queue from now on; False if it was pinned already."""
    with db.transaction() as session:
        exists = session.execute(
            sa.select(AGENT_QUEUES.c.agent_id).where(AGENT_QUEUES.c.agent_id == agent_id)
        ).first()
        if exists:
            return False
        session.execute(sa.insert(AGENT_QUEUES).values(agent_id=agent_id, pinned_at=utcnow()))
        return True


def unpin_agent(db: Database, agent_id: str) -> bool:
    with db.transaction() as session:
        result = session.execute(sa.delete(AGENT_QUEUES).where(AGENT_QUEUES.c.agent_id == agent_id))
        return bool(rowcount(result))


def live_agent_ids(db: Database, agent_ids: Sequence[str]) -> set[str]:
    """Which of ``agent_ids`` are registered and not deleted."""
    with db.transaction() as session:
        return set(
            session.execute(
                sa.select(AGENTS.c.id).where(
                    AGENTS.c.id.in_(list(agent_ids)), AGENTS.c.deleted.is_(False)
                )
            ).scalars()
        )
