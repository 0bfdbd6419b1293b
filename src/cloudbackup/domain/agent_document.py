"""The agent's working document, A7 (spec §8 A7, §16.4, OQ-26, OQ-37).

What an agent needs to run: its preferences (log level, how often to poll the event channel and
send heartbeats in each activation mode), its vault and its configurations with their next run
times. Configurations are rendered by ``configurations.agent_document_entry``, the same function
the 1 MB check of CF1/CF4 measures, so the document served here is the one that was measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from cloudbackup.domain.agents import live_agent
from cloudbackup.domain.configurations import agent_document_entry
from cloudbackup.store.db import Database
from cloudbackup.store.tables import Agent, Configuration, utcnow

# OQ-26: the A7 example's numbers are the defaults we serve; the limits table is informational.
POLLING_INTERVAL_MS = {"idle": 10_000, "active": 1_000, "real_time": 300}
POLLING_TIMEOUT_MS = {"idle": 90_000, "active": 60_000, "real_time": 40_000}
HEARTBEAT_INTERVAL_MS = {"idle": 3_600_000, "active": 1_000, "real_time": 1_000}
HEARTBEAT_TIMEOUT_MS = {"idle": 0, "active": 75_000, "real_time": 75_000}
MINIMUM_DISK_SPACE_MB = {"backup": 100, "restore": 100, "cleanup": 100}
# An agent is online while its last sign of life is younger than its mode's heartbeat timeout.
# Idle's timeout is 0 ("not tracked", spec §14.4), so there it is one idle heartbeat interval
# plus the active timeout as grace.
HEARTBEAT_TIMEOUT_SECONDS = {
    "idle": (HEARTBEAT_INTERVAL_MS["idle"] + HEARTBEAT_TIMEOUT_MS["active"]) / 1000,
    "active": HEARTBEAT_TIMEOUT_MS["active"] / 1000,
    "real_time": HEARTBEAT_TIMEOUT_MS["real_time"] / 1000,
}


@dataclass(frozen=True, slots=True)
class AgentDocument:
    """The parts of A7 that come from the database; the API adds URLs."""

    agent: Agent
    configurations: list[dict[str, Any]]


def system_preferences(log_level: str, events_host: str, channel: str) -> dict[str, Any]:
    """``system_preferences`` of A7; the event channel is this API's EV4 of the agent."""
    return {
        "environment": {"minimum_disk_space_mb": dict(MINIMUM_DISK_SPACE_MB)},
        "logging": {"level": log_level},
        "events": {
            "rse": {
                "host": events_host,
                "channel": channel,
                "polling": {
                    "interval_ms": dict(POLLING_INTERVAL_MS),
                    "timeout_ms": dict(POLLING_TIMEOUT_MS),
                },
                "heartbeat": {
                    "interval_ms": dict(HEARTBEAT_INTERVAL_MS),
                    "timeout_ms": dict(HEARTBEAT_TIMEOUT_MS),
                },
            }
        },
        "backup_controls": {"disable_vss": 0},
    }


class AgentDocumentService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def document(
        self, project_id: str, agent_id: str, now: datetime | None = None
    ) -> AgentDocument:
        """The agent and its non-deleted configurations as A7 entries (creation order)."""
        now = now or utcnow()
        with self.db.transaction() as session:
            agent = live_agent(session, project_id, agent_id)
            rows = session.execute(
                sa.select(Configuration)
                .where(
                    col(Configuration.agent_id) == agent.id,
                    col(Configuration.deleted).is_(False),
                )
                .order_by(col(Configuration.created_at), col(Configuration.id))
            ).scalars()
            entries = [agent_document_entry(row, agent.vault_id, now) for row in rows]
        return AgentDocument(agent=agent, configurations=entries)
