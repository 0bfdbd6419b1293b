"""Drill schedules: one per configuration that asks for restore drills on a period (issue 14,
an API extension; the configuration's v2 body is unchanged)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import table_of, ts_field, utcnow
from cloudbackup.store.tables.drills import DRILLS


class DrillSchedule(SQLModel, table=True):
    """Drill the configuration's latest restorable backup every ``every_hours``. The due time is
    a column, so a restarted beat carries on where it stopped."""

    __tablename__ = "drill_schedules"

    configuration_id: str = Field(primary_key=True, max_length=36)
    project_id: str = Field(max_length=64, index=True)
    every_hours: int
    next_due_time: datetime = Field(sa_type=sa.DateTime(timezone=True), index=True)
    last_fired_time: datetime | None = ts_field()
    last_drill_id: str | None = Field(default=None, max_length=36)  # the drill it last started
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


DRILL_SCHEDULES = table_of(DrillSchedule)
# A configuration's newest ended drill in one index probe (``store.drill_results``: /metrics
# and a schedule's view), however many drills pile up.
DRILLS_BY_CONFIGURATION_ENDED = sa.Index(
    "ix_drills_configuration_ended", DRILLS.c.configuration_id, DRILLS.c.ended_time
)
