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
    ``configuration_id``): per configuration one probe of ``ix_drills_configuration_ended``,
    so the cost follows the configurations, not the drills piling up over the years."""
    d, c = DRILLS.c, CONFIGURATIONS.c
    newest = (
        sa.select(d.seq)
        .where(
            d.configuration_id == c.id,
            d.ended_time.is_not(None),
            d.state.in_(list(final_states)),
        )
        .order_by(d.ended_time.desc(), d.seq.desc())
        .limit(1)
        .correlate(CONFIGURATIONS)
        .scalar_subquery()
    )
    # The newest drill's seq per configuration first, then those rows by primary key: a join
    # on the correlated subquery itself lets PostgreSQL hash the whole drills table instead
    # (OFFSET 0 keeps the planner from flattening the two steps back into one).
    picked = sa.select(c.id.label("configuration_id"), newest.label("seq")).where(
        c.deleted.is_(False)
    )
    if configuration_id is not None:
        picked = picked.where(c.id == configuration_id)
    newest_of = picked.offset(0).subquery()
    query = (
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
        )
        .select_from(newest_of)
        .join(DRILLS, d.seq == newest_of.c.seq)
        .order_by(d.configuration_id)
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
