"""Log upload requests of agents (spec §8.2, §14.5)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import table_of, ts_field, utcnow


class Logfile(SQLModel, table=True):
    """A request that an agent upload its log, and how far the upload got."""

    __tablename__ = "logfiles"

    seq: int | None = Field(default=None, primary_key=True)  # request order for A13
    id: str = Field(max_length=36, unique=True, index=True)
    project_id: str = Field(max_length=64, index=True)
    agent_id: str = Field(foreign_key="agents.id", max_length=36, index=True)
    state: str = Field(max_length=16)
    date: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    started_time: datetime | None = ts_field()
    completed_time: datetime | None = ts_field()
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


LOGFILES = table_of(Logfile)
