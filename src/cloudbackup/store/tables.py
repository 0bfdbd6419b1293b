"""SQLModel tables. One row per resource; JSON columns hold the nested documents the API
returns unchanged (addresses, inclusions, notifications, event members)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

# A naming convention keeps Alembic's constraint names stable on SQLite and PostgreSQL.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _ts(nullable: bool = True) -> Any:
    return Field(default=None, sa_type=sa.DateTime(timezone=True), nullable=nullable)


def _json() -> Any:
    return Field(default=None, sa_type=sa.JSON, nullable=True)


class ApiToken(SQLModel, table=True):
    """An API credential. Only the SHA-256 of the secret is stored."""

    __tablename__ = "api_tokens"

    id: str = Field(primary_key=True, max_length=36)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    project_id: str = Field(max_length=64, index=True)
    roles: str = Field(max_length=255)  # comma-separated role names (spec §1.7)
    agent_id: str | None = Field(default=None, max_length=36)
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    expires_at: datetime | None = _ts()
    revoked_at: datetime | None = _ts()


class Agent(SQLModel, table=True):
    """A registered backup agent (one per host) with its embedded vault (spec §8.1, §9.1)."""

    __tablename__ = "agents"

    id: str = Field(primary_key=True, max_length=36)
    project_id: str = Field(max_length=64, index=True)
    name: str
    version: str
    host_flavor: str = Field(max_length=32)
    host_region: str | None = None
    host_machine_id: str = Field(index=True)
    os_name: str
    os_version: str
    os_architecture: str
    fingerprint: str
    addresses: list[dict[str, Any]] | None = _json()
    enabled: bool = True
    rsa_modulus: str
    rsa_exponent: int
    password_hash: str = Field(max_length=64)
    log_level: str = Field(default="info", max_length=16)
    vault_id: str = Field(max_length=36, unique=True)
    vault_state: str = Field(default="created", max_length=32)
    vault_flavor: str = Field(default="swift", max_length=32)
    vault_encrypted: bool = False
    vault_region: str | None = None
    vault_use_internal: bool = False
    registered_time: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    deleted: bool = False


class Configuration(SQLModel, table=True):
    """A backup configuration of one agent (spec §7.1, §16). Deletion is soft (OQ-19)."""

    __tablename__ = "configurations"

    id: str = Field(primary_key=True, max_length=36)
    project_id: str = Field(max_length=64, index=True)
    agent_id: str = Field(foreign_key="agents.id", max_length=36, index=True)
    name: str
    enabled: bool = True
    schedule: dict[str, Any] | None = _json()  # {"start", "recurrence", "time_zone"} or null
    retention_days: int = 0
    inclusions: list[dict[str, Any]] | None = _json()
    exclusions: list[dict[str, Any]] | None = _json()
    notifications: list[dict[str, Any]] | None = _json()
    deleted: bool = False
    last_completed_backup_id: str | None = Field(default=None, max_length=36)
    next_scheduled_time: datetime | None = _ts()
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


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
    started_time: datetime | None = _ts()
    ended_time: datetime | None = _ts()
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
    heartbeat_at: datetime | None = _ts()
    published_at: datetime | None = _ts()
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


class Event(SQLModel, table=True):
    """One entry of the event stream (spec §10, §15). ``id`` is the global monotonic sequence.

    The tag columns say which lists an event belongs to (OQ-32); ``members`` holds the
    type-specific members exactly as the API renders them.
    """

    __tablename__ = "events"

    id: int | None = Field(default=None, primary_key=True)
    time: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    event: str = Field(max_length=64)
    project_id: str = Field(max_length=64, index=True)
    agent_id: str | None = Field(default=None, max_length=36, index=True)
    configuration_id: str | None = Field(default=None, max_length=36, index=True)
    backup_id: str | None = Field(default=None, max_length=36, index=True)
    members: dict[str, Any] | None = _json()


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table of a model: typed columns for queries (``BACKUPS.c.state.in_(...)``)."""
    table: sa.Table = model.__table__  # type: ignore[attr-defined]
    return table


API_TOKENS = table_of(ApiToken)
AGENTS = table_of(Agent)
CONFIGURATIONS = table_of(Configuration)
BACKUPS = table_of(Backup)
BACKUP_ERRORS = table_of(BackupError)
EVENTS = table_of(Event)
