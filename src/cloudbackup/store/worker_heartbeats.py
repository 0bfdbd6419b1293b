"""The workers' heartbeat rows: each worker upserts its report, the admin views read them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cloudbackup.store.db import Database, rowcount
from cloudbackup.store.tables import WORKER_HEARTBEATS, as_utc, utcnow


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One worker's last report (times in UTC)."""

    hostname: str
    agent_id: str | None
    queues: list[str]
    concurrency: int
    running: list[dict[str, Any]]
    pid: int
    started_at: datetime
    last_seen: datetime | None


def heartbeats(db: Database) -> list[Heartbeat]:
    """Every worker's report, by hostname."""
    with db.transaction() as session:
        rows = session.execute(
            sa.select(WORKER_HEARTBEATS).order_by(WORKER_HEARTBEATS.c.hostname)
        ).all()
    return [
        Heartbeat(
            hostname=row.hostname,
            agent_id=row.agent_id,
            queues=list(row.queues or []),
            concurrency=row.concurrency,
            running=list(row.running or []),
            pid=row.pid,
            started_at=as_utc(row.started_at),
            last_seen=as_utc(row.last_seen) if row.last_seen else None,
        )
        for row in rows
    ]


def record_heartbeat(
    db: Database,
    *,
    hostname: str,
    queues: list[str],
    concurrency: int,
    running: list[dict[str, Any]],
    pid: int,
    agent_id: str | None,
    started_at: datetime,
) -> None:
    """Upsert one worker's report (its queues and what it runs now)."""
    now = utcnow()
    values = {
        "queues": queues,
        "concurrency": concurrency,
        "running": running,
        "pid": pid,
        "agent_id": agent_id,
        "last_seen": now,
    }
    with db.transaction() as session:
        changed = session.execute(
            sa.update(WORKER_HEARTBEATS)
            .where(WORKER_HEARTBEATS.c.hostname == hostname)
            .values(**values)
        )
        if not rowcount(changed):
            session.execute(
                sa.insert(WORKER_HEARTBEATS).values(
                    hostname=hostname, started_at=started_at, **values
                )
            )


def forget_worker(db: Database, hostname: str) -> None:
    """A worker that shuts down cleanly leaves the list at once."""
    with db.transaction() as session:
        session.execute(
            sa.delete(WORKER_HEARTBEATS).where(WORKER_HEARTBEATS.c.hostname == hostname)
        )
