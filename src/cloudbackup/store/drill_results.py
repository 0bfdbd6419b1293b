"""The last drill that ended, per configuration: for ``/metrics``, a drill schedule's view and
the console (through the API)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from cloudbackup.store.db import Database
from cloudbackup.store.tables import CONFIGURATIONS, DRILLS, as_utc


@dataclass(frozen=True, slots=True)
class DrillResult:
    """One configuration's newest ended drill."""

    configuration_id: str
    drill_id: str
    backup_id: str
    state: str
    ended_time: datetime
    duration_seconds: float | None
    bytes_per_second: int | None
    files_checked: int
    mismatches: int


def last_drill_results(
    db: Database, final_states: Sequence[str], configuration_id: str | None = None
) -> list[DrillResult]:
    """The newest ended drill of every live configuration that has one (or of just
    ``configuration_id``): one indexed pass over the ended drills, newest per configuration."""
    d = DRILLS.c
    ended = d.state.in_(list(final_states)) & d.ended_time.is_not(None)
    if configuration_id is not None:
        ended &= d.configuration_id == configuration_id
    ranked = (
        sa.select(
            d.configuration_id,
            d.id,
            d.backup_id,
            d.state,
            d.ended_time,
            d.duration_seconds,
            d.bytes_per_second,
            d.files_checked,
            d.mismatches,
            sa.func.row_number()
            .over(partition_by=d.configuration_id, order_by=(d.ended_time.desc(), d.seq.desc()))
            .label("newest"),
        )
        .where(ended)
        .subquery()
    )
    r = ranked.c
    query = (
        sa.select(
            r.configuration_id,
            r.id,
            r.backup_id,
            r.state,
            r.ended_time,
            r.duration_seconds,
            r.bytes_per_second,
            r.files_checked,
            r.mismatches,
        )
        .join_from(ranked, CONFIGURATIONS, CONFIGURATIONS.c.id == r.configuration_id)
        .where(r.newest == 1, CONFIGURATIONS.c.deleted.is_(False))
        .order_by(r.configuration_id)
    )
    with db.read() as session:
        rows = session.execute(query).all()
    return [
        DrillResult(
            configuration_id=row[0],
            drill_id=row[1],
            backup_id=row[2],
            state=row[3],
            ended_time=as_utc(row[4]),
            duration_seconds=row[5],
            bytes_per_second=row[6],
            files_checked=int(row[7] or 0),
            mismatches=int(row[8] or 0),
        )
        for row in rows
    ]
