"""Operators' per-queue settings (``queue_settings``): paused, and a concurrency limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.store.db import Database, rowcount
from cloudbackup.store.tables import QUEUE_SETTINGS, utcnow


@dataclass(frozen=True, slots=True)
class QueueSetting:
    paused: bool = False
    concurrency: int | None = None  # None: no limit of its own


def queue_settings(db: Database) -> dict[str, QueueSetting]:
    """The settings of every queue that has any."""
    with db.transaction() as session:
        return {
            row.queue: QueueSetting(row.paused, row.concurrency)
            for row in session.execute(sa.select(QUEUE_SETTINGS))
        }


def queue_setting(session: Session, queue: str) -> QueueSetting | None:
    """The settings of ``queue`` inside the caller's transaction (None: it has none)."""
    row = session.execute(
        sa.select(QUEUE_SETTINGS.c.paused, QUEUE_SETTINGS.c.concurrency).where(
            QUEUE_SETTINGS.c.queue == queue
        )
    ).first()
    return None if row is None else QueueSetting(*row)


def save_queue_setting(db: Database, queue: str, values: dict[str, Any]) -> None:
    """Upsert ``paused`` and/or ``concurrency`` of ``queue`` (stamped ``updated_at`` now)."""
    values = {**values, "updated_at": utcnow()}
    with db.transaction() as session:
        changed = session.execute(
            sa.update(QUEUE_SETTINGS).where(QUEUE_SETTINGS.c.queue == queue).values(**values)
        )
        if not rowcount(changed):
            session.execute(sa.insert(QUEUE_SETTINGS).values(queue=queue, **values))


def paused_queues(db: Database) -> set[str]:
    with db.transaction() as session:
        return set(
            session.execute(
                sa.select(QUEUE_SETTINGS.c.queue).where(QUEUE_SETTINGS.c.paused.is_(True))
            ).scalars()
        )


def paused_queue_names() -> sa.Select[Any]:
    """A subquery of the paused queues' names (for queries that leave them out)."""
    return sa.select(QUEUE_SETTINGS.c.queue).where(QUEUE_SETTINGS.c.paused.is_(True))
