"""Backups and their per-file errors."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Field

from cloudbackup.store.tables.base import table_of
from cloudbackup.store.tables.run_columns import ExceptionColumns, RunColumns, RunErrorColumns


class Backup(RunColumns, table=True):
    """One run of a configuration (spec §3.1)."""

    __tablename__ = "backups"

    agent_id: str = Field(foreign_key="agents.id", max_length=36, index=True)
    configuration_id: str = Field(foreign_key="configurations.id", max_length=36, index=True)
    snapshot_id: int | None = None
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


class BackupError(RunErrorColumns, ExceptionColumns, table=True):
    """One per-file problem of a backup."""

    __tablename__ = "backup_errors"

    backup_id: str = Field(foreign_key="backups.id", max_length=36, index=True)


BACKUPS = table_of(Backup)
BACKUP_ERRORS = table_of(BackupError)
