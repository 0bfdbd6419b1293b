"""The ransomware guard: what each completed backup changed, and the anomalies it raised."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import table_of, ts_field, utcnow


class BackupChange(SQLModel, table=True):
    """One completed backup measured against the previous snapshot of its inclusions."""

    __tablename__ = "backup_changes"

    backup_id: str = Field(primary_key=True, foreign_key="backups.id", max_length=36)
    configuration_id: str = Field(max_length=36, index=True)
    # The backup's seq: the configuration's history in run order.
    backup_seq: int = Field(sa_type=sa.BigInteger)
    previous_files: int = Field(default=0, sa_type=sa.BigInteger)
    files_changed: int = Field(default=0, sa_type=sa.BigInteger)
    files_deleted: int = Field(default=0, sa_type=sa.BigInteger)
    # Plaintext and stored (compressed, sealed) bytes of the file data new to the vault.
    new_plain_bytes: int = Field(default=0, sa_type=sa.BigInteger)
    new_stored_bytes: int = Field(default=0, sa_type=sa.BigInteger)
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


class Anomaly(SQLModel, table=True):
    """A backup that looked like mass encryption; while ``open`` it holds its configuration's
    older snapshots against retention and cleanups. ``seq`` orders lists."""

    __tablename__ = "anomalies"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=36, unique=True, index=True)
    project_id: str = Field(max_length=64, index=True)
    agent_id: str = Field(max_length=36)
    configuration_id: str = Field(max_length=36, index=True)
    backup_id: str = Field(foreign_key="backups.id", max_length=36, index=True)
    detected_time: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    state: str = Field(default="open", max_length=16, index=True)  # open | dismissed
    files_compared: int = Field(default=0, sa_type=sa.BigInteger)
    files_changed: int = Field(default=0, sa_type=sa.BigInteger)
    files_deleted: int = Field(default=0, sa_type=sa.BigInteger)
    changed_ratio: float = 0.0
    deleted_ratio: float = 0.0
    new_plain_bytes: int = Field(default=0, sa_type=sa.BigInteger)
    compressed_size_ratio: float = 0.0
    history_compressed_size_ratio: float | None = None
    dismissed_time: datetime | None = ts_field()
    dismissed_by: str | None = Field(default=None, max_length=36)  # the admin token's id


BACKUP_CHANGES = table_of(BackupChange)
ANOMALIES = table_of(Anomaly)
