"""Idempotency keys: the first response of a POST, kept so a retried request gets it again."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import json_field, table_of, ts_field, utcnow


class IdempotencyKey(SQLModel, table=True):
    """One ``Idempotency-Key`` of one project on one ``METHOD path``.

    ``id`` is the SHA-256 of (project, method, path, key), so the primary key alone makes two
    concurrent first uses race for one row. ``status`` is NULL while the first request runs.
    """

    __tablename__ = "idempotency_keys"

    id: str = Field(primary_key=True, max_length=64)
    project_id: str = Field(max_length=64)
    # SHA-256 of what the request asked (content type, X-Agent-Id, body): a retry must match.
    fingerprint: str = Field(max_length=64)
    status: int | None = None
    headers: list[Any] | None = json_field()  # [[name, value], ...] as sent
    body: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    created_at: datetime = Field(
        default_factory=utcnow, sa_type=sa.DateTime(timezone=True), index=True
    )
    completed_at: datetime | None = ts_field()


IDEMPOTENCY_KEYS = table_of(IdempotencyKey)
