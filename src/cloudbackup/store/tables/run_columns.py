"""The columns every run table shares (backups, restores, cleanups) and those of their per-file
error tables; each table adds its own after these (column order in the models is not the order
of the migrated tables, and nothing reads columns by position)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import ts_field, utcnow


class RunColumns(SQLModel):
    """Identity, lifecycle and dispatch bookkeeping of one run. ``seq`` orders lists."""

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=36, unique=True, index=True)
    project_id: str = Field(max_length=64, index=True)
    vault_id: str = Field(max_length=36)
    state: str = Field(max_length=32, index=True)
    started_time: datetime | None = ts_field()
    ended_time: datetime | None = ts_field()
    errors_count: int = 0
    errors_reason: str = ""
    request_id: str = Field(max_length=36)
    attempts: int = 0
    heartbeat_at: datetime | None = ts_field()
    published_at: datetime | None = ts_field()
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


class RunErrorColumns(SQLModel):
    """One per-file problem of a run (spec §2.3, §6); each table adds the id of its run."""

    pk: int | None = Field(default=None, primary_key=True)
    index: int
    path: str
    type: str = Field(max_length=64)


class ExceptionColumns(SQLModel):
    """The ``exception`` of a per-file problem (backups and restores; a cleanup has none)."""

    exception_code: int | None = None
    exception_description: str | None = None
    exception_details: str | None = None
