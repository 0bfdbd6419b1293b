"""Cleanups of an agent's vault and their per-file errors (spec §5, §6)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import json_field, table_of, ts_field, utcnow


class Cleanup(SQLModel, table=True):
    """One maintenance run of an agent's vault (spec §5.1). ``seq`` orders lists."""

    __tablename__ = "cleanups"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=36, unique=True, index=True)
    project_id: str = Field(max_length=64, index=True)
    agent_id: str = Field(foreign_key="agents.id", max_length=36, index=True)
    vault_id: str = Field(max_length=36)
    state: str = Field(max_length=32, index=True)
    started_time: datetime | None = ts_field()
    ended_time: datetime | None = ts_field()
    snapshot_ids: list[int] | None = json_field()
    errors_count: int = 0
    errors_reason: str = ""
    # "" at creation (the spec's creation example), null once a run reported (ER3: always null).
    errors_diagnostics: str | None = ""
    bytes_before: int = Field(default=0, sa_type=sa.BigInteger)
    bytes_after: int = Field(default=0, sa_type=sa.BigInteger)
    # Holds agent_id while the cleanup is not final, NULL after: the unique constraint makes
    # "one active cleanup per vault" race-free (the same pattern as backups.active_manual_lock).
    active_lock: str | None = Field(default=None, max_length=36, unique=True)
    request_id: str = Field(max_length=36)
    attempts: int = 0
    heartbeat_at: datetime | None = ts_field()
    published_at: datetime | None = ts_field()
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


class CleanupError(SQLModel, table=True):
    """One per-file problem a cleanup found (spec §6: ``exception`` is always null)."""

    __tablename__ = "cleanup_errors"

    pk: int | None = Field(default=None, primary_key=True)
    cleanup_id: str = Field(foreign_key="cleanups.id", max_length=36, index=True)
    index: int
    path: str
    type: str = Field(max_length=64)


CLEANUPS = table_of(Cleanup)
CLEANUP_ERRORS = table_of(CleanupError)
