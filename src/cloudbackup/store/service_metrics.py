"""The figures `/metrics` reports about backups and schedules, read at scrape time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.store.db import Database
from cloudbackup.store.tables import BACKUPS, CONFIGURATIONS, as_utc


@dataclass(frozen=True, slots=True)
class Distribution:
    """Cumulative counts of values at or below each bound, the count of all and their sum."""

    cumulative: list[tuple[float, int]]
    count: int
    total: float


@dataclass(frozen=True, slots=True)
class BackupFigures:
    by_state: dict[str, int]
    durations: dict[str, Distribution]  # seconds from started to ended, by final state
    sizes: dict[str, Distribution]  # new bytes stored, by restorable state


@dataclass(frozen=True, slots=True)
class ScheduleBacklog:
    oldest_due: datetime | None  # the most overdue schedule's due time (UTC)
    due: int  # schedules due and not yet fired


def backup_figures(
    db: Database,
    *,
    final_states: Sequence[str],
    restorable_states: Sequence[str],
    duration_bounds: Sequence[float],
    size_bounds: Sequence[float],
) -> BackupFigures:
    """Backups by state, and histograms of run time and size, in three queries."""
    with db.transaction() as session:
        counts: dict[str, int] = dict(
            session.execute(
                sa.select(BACKUPS.c.state, sa.func.count()).group_by(BACKUPS.c.state)
            ).all()
        )
        durations = _histogram(
            session,
            _seconds_between(session, BACKUPS.c.started_time, BACKUPS.c.ended_time),
            duration_bounds,
            final_states,
            BACKUPS.c.started_time.is_not(None) & BACKUPS.c.ended_time.is_not(None),
        )
        sizes = _histogram(
            session, BACKUPS.c.bytes_backed_up, size_bounds, restorable_states, sa.true()
        )
    return BackupFigures(counts, durations, sizes)


def schedule_backlog(db: Database, now: datetime) -> ScheduleBacklog:
    """Active schedules due at ``now`` that no tick fired yet."""
    c = CONFIGURATIONS.c
    with db.transaction() as session:
        oldest, due = session.execute(
            sa.select(sa.func.min(c.next_scheduled_time), sa.func.count()).where(
                c.next_scheduled_time <= now, c.deleted.is_(False), c.enabled.is_(True)
            )
        ).one()
    return ScheduleBacklog(None if oldest is None else as_utc(oldest), int(due or 0))


def _seconds_between(session: Session, start: Any, end: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.extract("epoch", end - start)
    return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0


def _histogram(
    session: Session,
    value: Any,
    bounds: Sequence[float],
    states: Sequence[str],
    where: Any,
) -> dict[str, Distribution]:
    """Cumulative bucket counts and the sum of ``value`` per state, in one query."""
    columns = [
        sa.func.sum(sa.case((value <= bound, 1), else_=0)).label(f"b{i}")
        for i, bound in enumerate(bounds)
    ]
    rows = session.execute(
        sa.select(BACKUPS.c.state, sa.func.count(), sa.func.sum(value), *columns)
        .where(BACKUPS.c.state.in_(list(states)), where)
        .group_by(BACKUPS.c.state)
    ).all()
    result: dict[str, Distribution] = {}
    for state, count, total, *cumulative in rows:
        buckets = [(bound, int(n or 0)) for bound, n in zip(bounds, cumulative, strict=True)]
        result[state] = Distribution(buckets, int(count), float(total or 0))
    return result
