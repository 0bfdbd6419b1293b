"""The columns of a row an outbox sends with retries and back-off: a mail (``mail_outbox``) or a
webhook delivery (``webhook_deliveries``); each table adds what it sends and to whom."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import utcnow


class OutboxColumns(SQLModel):
    """``state``: pending, then sent (a mail) or delivered (a webhook delivery), or failed.
    A sender takes the pending rows whose ``next_attempt_at`` is due."""

    state: str = Field(default="pending", max_length=16, index=True)
    attempts: int = 0
    next_attempt_at: datetime = Field(
        default_factory=utcnow, sa_type=sa.DateTime(timezone=True), index=True
    )
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
