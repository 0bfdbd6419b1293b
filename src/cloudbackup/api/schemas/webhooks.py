"""Webhooks (issue 14, an API extension): request bodies and their rendering."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from cloudbackup.api.body import decode_json, decode_object
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.schemas.common import Link
from cloudbackup.api.schemas.run_patch import MAX_INT32
from cloudbackup.api.schemas.times import iso_z
from cloudbackup.domain.errors import InvalidInput
from cloudbackup.domain.webhooks import DeliveryView, Replay, WebhookDraft, check_draft
from cloudbackup.store.tables import Webhook, WebhookAttempt

CREATE_REQUIRED = {
    "url": "url is required: the http(s) URL events are POSTed to.",
    "events": 'events is required: ["*"] or a list of event names.',
}


class CreateWebhook(msgspec.Struct, forbid_unknown_fields=True):
    # Any JSON here: the domain names every problem of the values at once.
    url: Any = None
    events: Any = None
    description: Any = None


class StartReplay(msgspec.Struct, forbid_unknown_fields=True):
    from_event_id: Any = None


class WebhookOut(msgspec.Struct, omit_defaults=True):
    id: str
    url: str
    events: list[str]
    description: str
    created_time: str | None
    links: list[Link]
    secret: str | None = None  # only in the 201 answer


class AttemptOut(msgspec.Struct):
    time: str | None
    status: str
    status_code: int | None
    error: str | None
    duration_ms: int
    next_attempt_time: str | None


class DeliveryOut(msgspec.Struct):
    id: str
    event_id: str
    event: str
    state: str
    attempts: int
    created_time: str | None
    next_attempt_time: str | None
    last_attempt_time: str | None
    last_status_code: int | None
    last_error: str | None
    delivered_time: str | None
    attempt_log: list[AttemptOut]


def parse_create(
    request: Request[Any, Any, Any], body: bytes, *, allow_private: bool
) -> WebhookDraft:
    data = decode_object(request, body, CreateWebhook, CREATE_REQUIRED)
    return check_draft(data.url, data.events, data.description, allow_private)


def parse_replay(request: Request[Any, Any, Any], body: bytes) -> int:
    data = decode_json(request, body, StartReplay)
    value = data.from_event_id
    # Event ids are 32-bit: a wider one replays what the widest id would (nothing), and never
    # reaches PostgreSQL as an out-of-range operand.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return min(int(value), MAX_INT32)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18:
        return min(value, MAX_INT32)
    raise InvalidInput("Validation failed.", ["from_event_id is required: an event id (digits)."])


def webhook_out(row: Webhook, links: LinkBuilder, *, with_secret: bool = False) -> WebhookOut:
    return WebhookOut(
        id=row.id,
        url=row.url,
        events=list(row.events or []),
        description=row.description,
        created_time=iso_z(row.created_at),
        links=[
            links.link("self", "webhooks", row.id),
            links.link("deliveries", "webhooks", row.id, "deliveries"),
        ],
        secret=row.secret if with_secret else None,
    )


def attempt_out(row: WebhookAttempt) -> AttemptOut:
    return AttemptOut(
        time=iso_z(row.time),
        status=row.status,
        status_code=row.status_code,
        error=row.error,
        duration_ms=row.duration_ms,
        next_attempt_time=iso_z(row.next_attempt_at),
    )


def delivery_out(view: DeliveryView) -> DeliveryOut:
    row = view.delivery
    return DeliveryOut(
        id=str(row.id),
        event_id=str(row.event_id),
        event=row.event,
        state=row.state,
        attempts=row.attempts,
        created_time=iso_z(row.created_at),
        next_attempt_time=iso_z(row.next_attempt_at) if row.state == "pending" else None,
        last_attempt_time=iso_z(row.last_attempt_at),
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        delivered_time=iso_z(row.delivered_at),
        attempt_log=[attempt_out(a) for a in view.attempts],
    )


def replay_out(replay: Replay) -> dict[str, Any]:
    return {
        "queued": replay.count,
        "first_event_id": None if replay.first is None else str(replay.first),
        "last_event_id": None if replay.last is None else str(replay.last),
        "more": replay.more,
    }
