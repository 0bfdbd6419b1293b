"""Agents (with their embedded vault) and their configurations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import json_field, table_of, ts_field, utcnow


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
    addresses: list[dict[str, Any]] | None = json_field()
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
    # Runs on its own host and speaks to the API only (``cloudbackup agent run``): its runs are
    # handed to its event channel instead of run by a hosted worker (docs/decisions.md).
    remote: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # Folders the agent's hosted execution may touch, set by the operator (``domain.roots``);
    # null falls back to CLOUDBACKUP_ALLOWED_ROOTS, an empty list allows nothing.
    allowed_roots: list[str] | None = json_field()


class Configuration(SQLModel, table=True):
    """A backup configuration of one agent (spec §7.1, §16). Deletion is soft (OQ-19)."""

    __tablename__ = "configurations"

    id: str = Field(primary_key=True, max_length=36)
    project_id: str = Field(max_length=64, index=True)
    agent_id: str = Field(foreign_key="agents.id", max_length=36, index=True)
    name: str
    enabled: bool = True
    schedule: dict[str, Any] | None = json_field()  # {"start", "recurrence", "time_zone"} or null
    retention_days: int = 0
    inclusions: list[dict[str, Any]] | None = json_field()
    exclusions: list[dict[str, Any]] | None = json_field()
    notifications: list[dict[str, Any]] | None = json_field()
    deleted: bool = False
    last_completed_backup_id: str | None = Field(default=None, max_length=36)
    next_scheduled_time: datetime | None = ts_field()
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


AGENTS = table_of(Agent)
CONFIGURATIONS = table_of(Configuration)
