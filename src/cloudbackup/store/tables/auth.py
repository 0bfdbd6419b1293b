"""API tokens."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import table_of, ts_field, utcnow


class ApiToken(SQLModel, table=True):
    """An API credential. Only the SHA-256 of the secret is stored."""

    __tablename__ = "api_tokens"

    id: str = Field(primary_key=True, max_length=36)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    project_id: str = Field(max_length=64, index=True)
    roles: str = Field(max_length=255)  # comma-separated role names (spec §1.7)
    agent_id: str | None = Field(default=None, max_length=36)
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    expires_at: datetime | None = ts_field()
    revoked_at: datetime | None = ts_field()


API_TOKENS = table_of(ApiToken)
