"""Restore drills and the files each one found damaged (issue 14, an API extension)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Field

from cloudbackup.store.tables.base import table_of
from cloudbackup.store.tables.run_columns import ExceptionColumns, RunColumns, RunErrorColumns


class Drill(RunColumns, table=True):
    """One proof that a backup restores: every file restored into a scratch folder and its
    content compared with the manifest. The source is copied from the backup at creation."""

    __tablename__ = "drills"

    backup_id: str = Field(foreign_key="backups.id", max_length=36, index=True)
    agent_id: str = Field(max_length=36)  # the backup's agent: its queue holds the data
    configuration_id: str = Field(max_length=36, index=True)
    snapshot_id: int
    errors_diagnostics: str = ""
    files_checked: int = Field(default=0, sa_type=sa.BigInteger)
    bytes_checked: int = Field(default=0, sa_type=sa.BigInteger)
    mismatches: int = 0
    duration_seconds: float | None = None
    bytes_per_second: int | None = Field(default=None, sa_type=sa.BigInteger)


class DrillError(RunErrorColumns, ExceptionColumns, table=True):
    """One file a drill could not restore, or restored with other content than the manifest's."""

    __tablename__ = "drill_errors"

    drill_id: str = Field(foreign_key="drills.id", max_length=36, index=True)


DRILLS = table_of(Drill)
DRILL_ERRORS = table_of(DrillError)
