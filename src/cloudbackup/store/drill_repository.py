"""Queries and conditional writes of restore drills: runs like the others (``RunRepository``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from cloudbackup.store.db import Database
from cloudbackup.store.repositories import RunRepository
from cloudbackup.store.tables import DRILLS, Drill, DrillError, as_utc


class DrillRepository(RunRepository[Drill, DrillError]):
    model = Drill
    error_model = DrillError
    run_key = "drill_id"


@dataclass(frozen=True, slots=True)
class LastDrill:
    """The newest drill that ended (for ``/metrics``)."""

    state: str
    ended_time: datetime
    duration_seconds: float | None


def last_drill(db: Database, final_states: Sequence[str]) -> LastDrill | None:
    """The drill that ended last, of any project; None before the first."""
    t = DRILLS
    with db.read() as session:
        row = session.execute(
            sa.select(t.c.state, t.c.ended_time, t.c.duration_seconds)
            .where(t.c.state.in_(list(final_states)), t.c.ended_time.is_not(None))
            .order_by(t.c.ended_time.desc())
            .limit(1)
        ).first()
    return None if row is None else LastDrill(row[0], as_utc(row[1]), row[2])
