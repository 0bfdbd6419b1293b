"""What the retention pass reads: per configuration that keeps backups for a limited time, the
oldest end of its backups that are still restorable (and not held by an open anomaly)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.store.anomalies import held_backup_ids
from cloudbackup.store.tables import AGENTS, BACKUPS, CONFIGURATIONS, as_utc


@dataclass(frozen=True, slots=True)
class OldestKept:
    project_id: str
    agent_id: str
    configuration_id: str
    retention_days: int
    oldest_ended: datetime


def oldest_kept(session: Session) -> list[OldestKept]:
    """Configurations with ``retention.days`` > 0 of enabled, live agents, each with the
    ``ended_time`` of its oldest restorable backup (date arithmetic is left to the caller: it
    differs between databases)."""
    rows = session.execute(
        sa.select(
            CONFIGURATIONS.c.project_id,
            CONFIGURATIONS.c.agent_id,
            CONFIGURATIONS.c.id,
            CONFIGURATIONS.c.retention_days,
            sa.func.min(BACKUPS.c.ended_time),
        )
        .join_from(BACKUPS, CONFIGURATIONS, CONFIGURATIONS.c.id == BACKUPS.c.configuration_id)
        .join(AGENTS, AGENTS.c.id == CONFIGURATIONS.c.agent_id)
        .where(
            BACKUPS.c.restorable.is_(True),
            BACKUPS.c.ended_time.is_not(None),
            # Held by an open anomaly: not due, so the pass starts no cleanup for it.
            BACKUPS.c.id.not_in(held_backup_ids()),
            CONFIGURATIONS.c.retention_days > 0,
            AGENTS.c.deleted.is_(False),
            AGENTS.c.enabled.is_(True),
        )
        .group_by(
            CONFIGURATIONS.c.project_id,
            CONFIGURATIONS.c.agent_id,
            CONFIGURATIONS.c.id,
            CONFIGURATIONS.c.retention_days,
        )
    )
    return [OldestKept(r[0], r[1], r[2], int(r[3]), as_utc(r[4])) for r in rows]
