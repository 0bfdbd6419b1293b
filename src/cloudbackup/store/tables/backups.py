"""Backups and their per-file errors."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import table_of, ts_field, utcnow


class Backup(SQLModel, table=True):
    """One run of a configuration (spec §3.1). ``seq`` gives the creation order for paging."""

    __tablename__ = "backups"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=36, unique=True, index=True)
    project_id: str = Field(max_length=64, index=True)
    agent_id: str = Field(foreign_key="agents.id", max_length=36, index=True)
    configuration_id: str = Field(foreign_key="configurations.id", max_length=36, index=True)
    vault_id: str = Field(max_length=36)
    state: str = Field(max_length=32, index=True)
    started_time: datetime | None = ts_field()
    ended_time: datetime | None = ts_field()
    snapshot_id: int | None = None
    errors_count: int = 0
    errors_reason: str = ""
    errors_diagnostics: str = ""
    files_searched: int = Field(default=0, sa_type=sa.BigInteger)
    files_backed_up: int = Field(default=0, sa_type=sa.BigInteger)
    bytes_searched: int = Field(default=0, sa_type=sa.BigInteger)
    bytes_backed_up: int = Field(default=0, sa_type=sa.BigInteger)
    bytes_in_db: int = Field(default=0, sa_type=sa.BigInteger)
    bandwidth_avg_bps: int = Field(default=0, sa_type=sa.BigInteger)
    restorable: bool = False
    # Holds configuration_id while a manual run is active, NULL otherwise: the unique constraint
    # makes "one active manual run per configuration" race-free (see docs/decisions.md).
    active_manual_lock: str | None = Field(default=None, max_length=36, unique=True)
    request_id: str = Field(max_length=36)
    attempts: int = 0
    heartbeat_at: datetime | None = ts_field()
    published_at: datetime | None = ts_field()
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


class BackupError(SQLModel, table=True):
    """One per-file problem of a backup (spec §2.3, §6)."""

    __tablename__ = "backup_errors"

    pk: int | None = Field(default=None, primary_key=True)
    backup_id: str = Field(foreign_key="backups.id", max_length=36, index=True)
    index: int
    path: str
    type: str = Field(max_length=64)
    exception_code: int | None = None
    exception_description: str | None = None
    exception_details: str | None = None


BACKUPS = table_of(Backup)
BACKUP_ERRORS = table_of(BackupError)
