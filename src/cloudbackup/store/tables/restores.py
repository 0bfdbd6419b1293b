"""Restores and their per-file errors (spec §4, §6)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from cloudbackup.store.tables.base import json_field, table_of
from cloudbackup.store.tables.run_columns import ExceptionColumns, RunColumns, RunErrorColumns


class Restore(RunColumns, table=True):
    """One restore of a backup onto a destination agent (spec §4.1).

    The source (agent, configuration, vault, snapshot) is copied from the backup at creation, so
    events and the worker never need the backup row again (and EV8 can list restore events).
    """

    __tablename__ = "restores"

    backup_id: str = Field(foreign_key="backups.id", max_length=36, index=True)
    source_agent_id: str = Field(max_length=36)
    configuration_id: str = Field(max_length=36, index=True)
    snapshot_id: int
    destination_agent_id: str = Field(foreign_key="agents.id", max_length=36, index=True)
    destination_path: str | None = None
    # R1's password of another agent's vault, sealed with the destination agent's RSA key
    # (only it reads it); never shown, and erased when the restore ends.
    encrypted_password_hex: str | None = Field(default=None, sa_type=sa.Text)
    overwrite_files: bool = False
    inclusions: list[dict[str, Any]] | None = json_field()
    exclusions: list[dict[str, Any]] | None = json_field()
    errors_diagnostics: str = ""
    files_restored: int = Field(default=0, sa_type=sa.BigInteger)
    bytes_restored: int = Field(default=0, sa_type=sa.BigInteger)


class RestoreError(RunErrorColumns, ExceptionColumns, table=True):
    """One per-file problem of a restore."""

    __tablename__ = "restore_errors"

    restore_id: str = Field(foreign_key="restores.id", max_length=36, index=True)


RESTORES = table_of(Restore)
RESTORE_ERRORS = table_of(RestoreError)
