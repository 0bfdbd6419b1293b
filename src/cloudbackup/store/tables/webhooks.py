"""Webhooks and their delivery queue.

The events table is the log: a webhook pass reads events after its cursor and writes one
delivery row per matching webhook, holding the rendered body, in the same transaction that
moves the cursor; the event's purge therefore never loses a pending delivery.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import json_field, table_of, ts_field, utcnow


class Webhook(SQLModel, table=True):
    __tablename__ = "webhooks"

    id: str = Field(primary_key=True, max_length=36)
    project_id: str = Field(max_length=64, index=True)
    url: str = Field(max_length=2000)
    # Event names, or ["*"] for every event of the project.
    events: list[Any] | None = json_field()
    description: str = Field(default="", max_length=500)
    # "whsec_" + base64: needed in clear to sign; never returned after creation.
    secret: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


class WebhookDelivery(SQLModel, table=True):
    """One event to POST to one webhook, kept until delivered or given up on."""

    __tablename__ = "webhook_deliveries"

    id: int | None = Field(default=None, primary_key=True)
    webhook_id: str = Field(max_length=36, index=True)
    project_id: str = Field(max_length=64, index=True)
    event_id: int
    event: str = Field(max_length=64)
    body: str = Field(sa_type=sa.Text)
    state: str = Field(default="pending", max_length=16, index=True)  # pending|delivered|failed
    attempts: int = 0
    next_attempt_at: datetime = Field(
        default_factory=utcnow, sa_type=sa.DateTime(timezone=True), index=True
    )
    last_attempt_at: datetime | None = ts_field()
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    delivered_at: datetime | None = ts_field()


WEBHOOKS = table_of(Webhook)
WEBHOOK_DELIVERIES = table_of(WebhookDelivery)
