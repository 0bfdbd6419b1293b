"""Cleanups of an agent's vault and their per-file errors (spec §5, §6)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Field

from cloudbackup.store.tables.base import json_field, table_of
from cloudbackup.store.tables.run_columns import RunColumns, RunErrorColumns


class Cleanup(RunColumns, table=True):
    """One maintenance run of an agent's vault (spec §5.1)."""

    __tablename__ = "cleanups"

    agent_id: str = Field(foreign_key="agents.id", max_length=36, index=True)
    snapshot_ids: list[int] | None = json_field()
    # "" at creation (the spec's creation example), null once a run reported (ER3: always null).
    errors_diagnostics: str | None = ""
    bytes_before: int = Field(default=0, sa_type=sa.BigInteger)
    bytes_after: int = Field(default=0, sa_type=sa.BigInteger)
    # Holds agent_id while the cleanup is not final, NULL after: the unique constraint makes
    # "one active cleanup per vault" race-free (the same pattern as backups.active_manual_lock).
    active_lock: str | None = Field(default=None, max_length=36, unique=True)


class CleanupError(RunErrorColumns, table=True):
    """One per-file problem a cleanup found (spec §6: ``exception`` is always null)."""

    __tablename__ = "cleanup_errors"

    cleanup_id: str = Field(foreign_key="cleanups.id", max_length=36, index=True)


CLEANUPS = table_of(Cleanup)
CLEANUP_ERRORS = table_of(CleanupError)
