"""Browse requests of a backup (B5/B6) or of an agent's host (A10/A11), with their answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import json_field, table_of, ts_field, utcnow


class BrowseRequest(SQLModel, table=True):
    """A pending or answered browse request (spec §2.7, §14.8). ``id`` is the ``request_id``.

    ``path`` is the directory exactly as asked (base64 of its bytes in ``path_encoded`` when it is
    not UTF-8). The answer's ``event_id`` is the id of the ``*_browsed`` event (OQ-25).
    """

    __tablename__ = "browse_requests"

    id: str = Field(primary_key=True, max_length=36)
    project_id: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=8)  # "backup" or "host"
    agent_id: str = Field(max_length=36, index=True)
    backup_id: str | None = Field(default=None, max_length=36, index=True)
    path: str
    path_encoded: str | None = None
    state: str = Field(default="pending", max_length=16)  # pending -> answered
    succeeded: bool | None = None
    items: list[dict[str, Any]] | None = json_field()
    event_id: int | None = None
    answered_at: datetime | None = ts_field()
    published_at: datetime | None = ts_field()
    created_at: datetime = Field(
        default_factory=utcnow, sa_type=sa.DateTime(timezone=True), index=True
    )


BROWSE_REQUESTS = table_of(BrowseRequest)
