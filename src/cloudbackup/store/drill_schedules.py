"""Queries and writes of drill schedules (``domain.drill_schedules`` holds the rules)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.store.db import Database, rowcount
from cloudbackup.store.tables import (
    BACKUPS,
    CONFIGURATIONS,
    DRILL_SCHEDULES,
    DRILLS,
    Backup,
    Configuration,
    DrillSchedule,
    as_utc,
)


@dataclass(frozen=True, slots=True)
class DueSchedule:
    """A schedule due now, with what the tick needs of its configuration."""

    configuration_id: str
    project_id: str
    every_hours: int
    next_due_time: datetime
    configuration_deleted: bool


def configuration_row(
    session: Session, project_id: str, configuration_id: str, *, lock: bool
) -> Configuration | None:
    """The project's configuration; with ``lock`` its row is locked, so the PUTs and DELETEs of
    one schedule queue instead of racing to insert it."""
    query = sa.select(Configuration).where(
        CONFIGURATIONS.c.id == configuration_id, CONFIGURATIONS.c.project_id == project_id
    )
    return session.execute(query.with_for_update() if lock else query).scalar_one_or_none()


def schedule_of(session: Session, project_id: str, configuration_id: str) -> DrillSchedule | None:
    return session.execute(
        sa.select(DrillSchedule).where(
            DRILL_SCHEDULES.c.configuration_id == configuration_id,
            DRILL_SCHEDULES.c.project_id == project_id,
        )
    ).scalar_one_or_none()


def insert_schedule(session: Session, values: dict[str, Any]) -> None:
    session.execute(sa.insert(DRILL_SCHEDULES).values(values))


def update_schedule(session: Session, configuration_id: str, values: dict[str, Any]) -> None:
    session.execute(
        sa.update(DRILL_SCHEDULES)
        .where(DRILL_SCHEDULES.c.configuration_id == configuration_id)
        .values(values)
    )


def delete_schedule(session: Session, configuration_id: str) -> bool:
    result = session.execute(
        sa.delete(DRILL_SCHEDULES).where(DRILL_SCHEDULES.c.configuration_id == configuration_id)
    )
    return bool(rowcount(result))


def due_schedules(session: Session, now: datetime, limit: int) -> list[DueSchedule]:
    """Schedules due by ``now``, oldest first, locked (``FOR UPDATE SKIP LOCKED`` on PostgreSQL:
    a second beat takes other rows; SQLite serialises writers anyway)."""
    s, c = DRILL_SCHEDULES.c, CONFIGURATIONS.c
    rows = session.execute(
        sa.select(s.configuration_id, s.project_id, s.every_hours, s.next_due_time, c.deleted)
        .join_from(DRILL_SCHEDULES, CONFIGURATIONS, c.id == s.configuration_id, isouter=True)
        .where(s.next_due_time <= now)
        .order_by(s.next_due_time, s.configuration_id)
        .limit(limit)
        .with_for_update(of=DRILL_SCHEDULES, skip_locked=True)
    ).all()
    return [
        DueSchedule(config_id, project_id, every, as_utc(due), deleted is not False)
        for config_id, project_id, every, due, deleted in rows
    ]


def configurations_with_open_drills(
    session: Session, configuration_ids: Sequence[str], final_states: Sequence[str]
) -> set[str]:
    """Which of the configurations have a drill not in one of ``final_states``."""
    if not configuration_ids:
        return set()
    d = DRILLS.c
    return set(
        session.execute(
            sa.select(d.configuration_id)
            .where(
                d.configuration_id.in_(list(configuration_ids)),
                d.state.not_in(list(final_states)),
            )
            .distinct()
        ).scalars()
    )


def latest_restorable_backup(session: Session, configuration_id: str) -> Backup | None:
    """The configuration's newest backup that can be restored (a snapshot it completed)."""
    b = BACKUPS.c
    return session.execute(
        sa.select(Backup)
        .where(
            b.configuration_id == configuration_id,
            b.restorable.is_(True),
            b.snapshot_id.is_not(None),
        )
        .order_by(b.created_at.desc(), b.seq.desc())
        .limit(1)
    ).scalar_one_or_none()


def schedules_due(db: Database, now: datetime) -> int:
    """How many drill schedules are due and not yet fired (for ``/metrics``)."""
    with db.read() as session:
        due = session.execute(
            sa.select(sa.func.count()).where(DRILL_SCHEDULES.c.next_due_time <= now)
        ).scalar_one()
    return int(due or 0)
