"""What every table module shares: the metadata naming convention, UTC time helpers, column
helpers, and typed access to a model's Core table."""

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


def ts_field(nullable: bool = True) -> Any:
    return Field(default=None, sa_type=sa.DateTime(timezone=True), nullable=nullable)


def json_field() -> Any:
    return Field(default=None, sa_type=sa.JSON, nullable=True)


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table of a model: typed columns for queries (``BACKUPS.c.state.in_(...)``)."""
    table: sa.Table = model.__table__  # type: ignore[attr-defined]
    return table
