"""Restores and their per-file errors (spec §4, §6)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import json_field, table_of, ts_field, utcnow


class Restore(SQLModel, table=True):
    """One restore of a backup onto a destination agent (spec §4.1). ``seq`` orders lists.

    The source (agent, configuration, vault, snapshot) is copied from the backup at creation, so
    events and the worker never need the backup row again (and EV8 can list restore events).
    """

    __tablename__ = "restores"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=36, unique=True, index=True)
    project_id: str = Field(max_length=64, index=True)
    backup_id: str = Field(foreign_key="backups.id", max_length=36, index=True)
    source_agent_id: str = Field(max_length=36)
    configuration_id: str = Field(max_length=36, index=True)
    vault_id: str = Field(max_length=36)
    snapshot_id: int
    destination_agent_id: str = Field(foreign_key="agents.id", max_length=36, index=True)
    destination_path: str | None = None
    overwrite_files: bool = False
    inclusions: list[dict[str, Any]] | None = json_field()
    exclusions: list[dict[str, Any]] | None = json_field()
    state: str = Field(max_length=32, index=True)
    started_time: datetime | None = ts_field()
    ended_time: datetime | None = ts_field()
    errors_count: int = 0
    errors_reason: str = ""
    errors_diagnostics: str = ""
    files_restored: int = Field(default=0, sa_type=sa.BigInteger)
    bytes_restored: int = Field(default=0, sa_type=sa.BigInteger)
    request_id: str = Field(max_length=36)
    attempts: int = 0
    heartbeat_at: datetime | None = ts_field()
    published_at: datetime | None = ts_field()
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


class RestoreError(SQLModel, table=True):
    """One per-file problem of a restore (spec §2.3, §6)."""

    __tablename__ = "restore_errors"

    pk: int | None = Field(default=None, primary_key=True)
    restore_id: str = Field(foreign_key="restores.id", max_length=36, index=True)
    index: int
    path: str
    type: str = Field(max_length=64)
    exception_code: int | None = None
    exception_description: str | None = None
    exception_details: str | None = None


RESTORES = table_of(Restore)
RESTORE_ERRORS = table_of(RestoreError)
