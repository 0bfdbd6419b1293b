"""Webhooks, their subscriptions, and the delivery log.

Every event insert also inserts one delivery row per subscribed webhook, in the same
transaction (``store.webhook_log``); the event stays in the events table while a delivery of it
is pending, and each delivery keeps the rendered body once sent, so a replay needs no event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import json_field, table_of, ts_field, utcnow
from cloudbackup.store.tables.outbox_columns import OutboxColumns


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


class WebhookDelivery(OutboxColumns, table=True):
    """One event to POST to one webhook, kept until delivered or given up on."""

    __tablename__ = "webhook_deliveries"

    id: int | None = Field(default=None, primary_key=True)
    webhook_id: str = Field(max_length=36, index=True)
    project_id: str = Field(max_length=64, index=True)
    event_id: int = Field(index=True)
    event: str = Field(max_length=64)
    body: str = Field(sa_type=sa.Text)
    last_attempt_at: datetime | None = ts_field()
    # When a send of it was last published: the sweep re-publishes a due delivery once, not
    # on every pass while it waits in the queue.
    published_at: datetime | None = ts_field()
    last_status_code: int | None = None
    delivered_at: datetime | None = ts_field()


class WebhookSubscription(SQLModel, table=True):
    """One event name (or ``*``) a webhook receives: what the event insert joins on."""

    __tablename__ = "webhook_subscriptions"

    webhook_id: str = Field(primary_key=True, max_length=36)
    event: str = Field(primary_key=True, max_length=64)
    project_id: str = Field(max_length=64, index=True)


class WebhookAttempt(SQLModel, table=True):
    """One POST of a delivery: when, the answer, and when the next one is due."""

    __tablename__ = "webhook_attempts"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(index=True)
    webhook_id: str = Field(max_length=36, index=True)
    time: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    status: str = Field(max_length=16)  # delivered|failed
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)
    duration_ms: int = 0
    next_attempt_at: datetime | None = ts_field()


WEBHOOKS = table_of(Webhook)
WEBHOOK_SUBSCRIPTIONS = table_of(WebhookSubscription)
WEBHOOK_ATTEMPTS = table_of(WebhookAttempt)
WEBHOOK_DELIVERIES = table_of(WebhookDelivery)
