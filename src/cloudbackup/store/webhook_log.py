"""The event write hook: every event inserted queues its webhook deliveries in the same
transaction, so no event a webhook subscribed to can be committed without its delivery.

The deliveries are one ``INSERT ... SELECT`` from ``webhook_subscriptions`` (a project without
webhooks inserts nothing); their ids go into ``session.info[NEW_DELIVERIES]`` for whoever
publishes them after the commit (``Database.after_commit``, wired by the composition roots).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Session

from cloudbackup.store.tables import EVENTS, WEBHOOK_DELIVERIES, WEBHOOK_SUBSCRIPTIONS, utcnow

NEW_DELIVERIES = "cloudbackup.new_webhook_deliveries"
EVERY_EVENT = "*"
DELIVERY_COLUMNS = (
    "webhook_id",
    "project_id",
    "event_id",
    "event",
    "body",
    "state",
    "attempts",
    "next_attempt_at",
    "created_at",
)


def deliveries_of(event_id: Any, event: Any, project_id: Any, now: Any) -> sa.Select[Any]:
    """The delivery rows of one event: one per webhook of its project subscribed to it."""
    subs = WEBHOOK_SUBSCRIPTIONS.c
    return sa.select(
        subs.webhook_id,
        subs.project_id,
        event_id,
        event,
        sa.literal(""),
        sa.literal("pending"),
        sa.literal(0),
        now,
        now,
    ).where(subs.project_id == project_id, subs.event.in_([event, sa.literal(EVERY_EVENT)]))


def _text(name: str) -> sa.BindParameter[str]:
    return sa.bindparam(name, type_=sa.String)


_NOW = sa.bindparam("now", type_=WEBHOOK_DELIVERIES.c.created_at.type)
INSERT_EVENT_ID = sa.insert(EVENTS).returning(EVENTS.c.id)
INSERT_DELIVERIES = (
    sa.insert(WEBHOOK_DELIVERIES)
    .from_select(
        list(DELIVERY_COLUMNS),
        deliveries_of(
            sa.bindparam("event_id", type_=sa.Integer),
            _text("event"),
            _text("project_id"),
            _NOW,
        ),
    )
    .returning(WEBHOOK_DELIVERIES.c.id)
)


def _delivery_params(event_id: int, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event": values["event"],
        "project_id": values["project_id"],
        "now": utcnow(),
    }


def insert_event(session: Session, values: dict[str, Any]) -> int:
    """Insert one event and its deliveries; returns the event id."""
    event_id: int = session.execute(INSERT_EVENT_ID, values).scalar_one()
    ids = list(session.execute(INSERT_DELIVERIES, _delivery_params(event_id, values)).scalars())
    if ids:
        session.info.setdefault(NEW_DELIVERIES, []).extend(ids)
    return event_id


async def insert_event_async(connection: AsyncConnection, values: dict[str, Any]) -> list[int]:
    """:func:`insert_event` on an asyncio connection (B1 on SQLite); returns the deliveries."""
    result = await connection.execute(INSERT_EVENT_ID, values)
    event_id = int(result.scalar_one())
    inserted = await connection.execute(INSERT_DELIVERIES, _delivery_params(event_id, values))
    return [int(i) for i in inserted.scalars()]


def needed_by_deliveries() -> sa.Exists:
    """True for an ``events`` row a pending delivery still reads (it has no body yet): the
    event purge keeps it (the event lists' retention is a view, not the log's limit)."""
    d = WEBHOOK_DELIVERIES.c
    return (
        sa.select(d.id)
        .where(d.event_id == EVENTS.c.id, d.state == "pending", d.body == "")
        .exists()
    )


def relax_commit(session: Session) -> None:
    """Let this transaction's commit return before its WAL is on disk (PostgreSQL; SQLite
    has nothing to relax). Only for writes whose loss in a database crash costs a duplicate
    POST, never a lost event: a delivery's lease and the outcome of one try."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_RELAXED)


_RELAXED = sa.text("SET LOCAL synchronous_commit TO OFF")
