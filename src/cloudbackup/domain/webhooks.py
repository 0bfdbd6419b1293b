"""Webhooks (issue 14, part 1): signing per the Standard Webhooks convention and the SSRF rule.

A webhook's secret is ``whsec_`` + base64 of 32 random bytes; each POST carries ``webhook-id``
(the event id), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature: v1,<base64
HMAC-SHA256 over "{id}.{timestamp}.{body}">`` keyed with the decoded part after ``whsec_``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.domain.errors import Conflict, InvalidInput, NotFound
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import Page, SortDir, keyset_page
from cloudbackup.store.tables import (
    EVENTS,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_SUBSCRIPTIONS,
    WEBHOOKS,
    utcnow,
)
from cloudbackup.store.tables.webhooks import Webhook, WebhookAttempt, WebhookDelivery
from cloudbackup.store.webhook_log import EVERY_EVENT, NEW_DELIVERIES

# Delivery ids are INTEGER primary keys (32-bit on PostgreSQL).
MAX_ROW_ID = 2**31 - 1

SECRET_PREFIX = "whsec_"
SCHEMES = ("http", "https")

Resolver = Callable[[str], list[str]]


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value of one POST."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }


def resolve(host: str) -> list[str]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})


def check_url(url: str, *, allow_private: bool, resolver: Resolver = resolve) -> list[str] | None:
    """Refuse (InvalidInput) a URL that is not http(s), or whose host is or resolves to a
    loopback, private, link-local, multicast, reserved or unspecified address (SSRF), unless
    ``allow_private`` (CLOUDBACKUP_WEBHOOK_ALLOW_PRIVATE). Checked at creation and before every
    delivery, since DNS may change. Returns the addresses checked (None: not resolved), which
    the sender connects to, so a second lookup cannot answer differently."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in SCHEMES or not parts.hostname or port == -1:
        raise InvalidInput("Validation failed.", ["url must be an http:// or https:// URL."])
    if allow_private:
        return None
    try:
        addresses = resolver(parts.hostname)
    except (OSError, UnicodeError) as exc:
        raise InvalidInput(
            "Validation failed.", [f"url's host {parts.hostname!r} does not resolve: {exc}"]
        ) from exc
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if not ip.is_global or ip.is_multicast or ip.is_unspecified:
            raise InvalidInput(
                "Validation failed.",
                [
                    f"url's host {parts.hostname!r} is or resolves to {ip}, a loopback, private, "
                    "link-local, multicast or unspecified address; webhooks go to public "
                    "addresses only (CLOUDBACKUP_WEBHOOK_ALLOW_PRIVATE=true allows these)."
                ],
            )
    return addresses


# -- the resource: POST/GET/DELETE /v2/{project_id}/webhooks ------------------------------------

MAX_WEBHOOKS = 20  # per project: each one gets every matching event of the project
MAX_URL = 2000
MAX_DESCRIPTION = 500
MAX_EVENTS = 100
EVENT_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_REPLAY = 10_000  # deliveries one replay queues; the answer says where to go on


@dataclass(frozen=True, slots=True)
class WebhookDraft:
    """A checked POST body."""

    url: str
    events: list[str]
    description: str


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """A delivery with its attempts, oldest first."""

    delivery: WebhookDelivery
    attempts: list[WebhookAttempt]

    @property
    def id(self) -> int:
        return int(self.delivery.id or 0)


@dataclass(frozen=True, slots=True)
class Replay:
    """What a replay queued: ``count`` deliveries of events ``first`` to ``last``; ``more``
    when it stopped at :data:`MAX_REPLAY` (replay again from ``last`` + 1)."""

    count: int
    first: int | None
    last: int | None
    more: bool


def check_draft(
    url: object, events: object, description: object, allow_private: bool
) -> WebhookDraft:
    """The POST body's rules: every problem at once, then the SSRF rule on the URL."""
    problems: list[str] = []
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL:
        problems.append(f"url is required: an http(s) URL of at most {MAX_URL} characters.")
    names: list[str] = []
    if not isinstance(events, list) or not events or len(events) > MAX_EVENTS:
        problems.append(f'events is required: ["*"] or 1 to {MAX_EVENTS} event names.')
    else:
        for name in events:
            if not isinstance(name, str) or not (name == EVERY_EVENT or EVENT_NAME.fullmatch(name)):
                problems.append(f'events: {name!r} is not an event name (or "*").')
            elif name in names:
                problems.append(f"events: {name!r} is listed twice.")
            else:
                names.append(name)
        if EVERY_EVENT in names and len(names) > 1:
            problems.append('events: "*" already means every event; list it alone.')
    if description is None:
        description = ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        problems.append(f"description must be a string of at most {MAX_DESCRIPTION} characters.")
    if problems:
        raise InvalidInput("Validation failed.", problems)
    assert isinstance(url, str) and isinstance(description, str)
    check_url(url, allow_private=allow_private)
    return WebhookDraft(url, names, description)


class WebhookService:
    """Webhooks of a project, their deliveries, re-sends and replays. New deliveries are
    published after the commit by the database's ``after_commit`` hook (``webhook_deliveries``)."""

    def __init__(self, db: Database, allow_private: bool = False) -> None:
        self.db = db
        self.allow_private = allow_private

    def create(self, project_id: str, draft: WebhookDraft) -> Webhook:
        """The new webhook, with its secret (shown only in this answer)."""
        row = Webhook(
            id=str(uuid.uuid4()),
            project_id=project_id,
            url=draft.url,
            events=list(draft.events),
            description=draft.description,
            secret=new_secret(),
        )
        with self.db.transaction() as session:
            count = session.execute(
                sa.select(sa.func.count())
                .select_from(WEBHOOKS)
                .where(WEBHOOKS.c.project_id == project_id)
            ).scalar_one()
            if count >= MAX_WEBHOOKS:
                raise Conflict(f"A project has at most {MAX_WEBHOOKS} webhooks; delete one first.")
            session.add(row)
            session.flush()
            session.execute(
                sa.insert(WEBHOOK_SUBSCRIPTIONS),
                [
                    {"webhook_id": row.id, "project_id": project_id, "event": e}
                    for e in draft.events
                ],
            )
        return row

    def list_project(self, project_id: str) -> list[Webhook]:
        with self.db.read() as session:
            query = sa.select(Webhook).where(WEBHOOKS.c.project_id == project_id)
            return list(
                session.execute(query.order_by(WEBHOOKS.c.created_at, WEBHOOKS.c.id)).scalars()
            )

    def get(self, project_id: str, webhook_id: str) -> Webhook:
        with self.db.read() as session:
            return _webhook(session, project_id, webhook_id)

    def delete(self, project_id: str, webhook_id: str) -> None:
        """The webhook, its subscriptions, deliveries and attempts: nothing more is sent."""
        with self.db.transaction() as session:
            row = _webhook(session, project_id, webhook_id)
            for table in (WEBHOOK_ATTEMPTS, WEBHOOK_DELIVERIES, WEBHOOK_SUBSCRIPTIONS):
                session.execute(sa.delete(table).where(table.c.webhook_id == row.id))
            session.execute(sa.delete(WEBHOOKS).where(WEBHOOKS.c.id == row.id))

    def deliveries(
        self,
        project_id: str,
        webhook_id: str,
        *,
        marker: int | None,
        limit: int,
        sort_dir: SortDir,
    ) -> Page[DeliveryView]:
        """The webhook's deliveries (newest first by default), each with its attempts."""
        with self.db.read() as session:
            _webhook(session, project_id, webhook_id)
            query = sa.select(WebhookDelivery).where(WEBHOOK_DELIVERIES.c.webhook_id == webhook_id)
            page = keyset_page(session, query, WEBHOOK_DELIVERIES.c.id, marker, limit, sort_dir)
            shown = page.items
            attempts: dict[int, list[WebhookAttempt]] = {}
            if shown:
                found = session.execute(
                    sa.select(WebhookAttempt)
                    .where(WEBHOOK_ATTEMPTS.c.delivery_id.in_([r.id for r in shown]))
                    .order_by(WEBHOOK_ATTEMPTS.c.id)
                ).scalars()
                for attempt in found:
                    attempts.setdefault(attempt.delivery_id, []).append(attempt)
        views = [DeliveryView(r, attempts.get(int(r.id or 0), [])) for r in shown]
        return Page(views, page.has_more)

    def resend(self, project_id: str, webhook_id: str, delivery_id: str) -> DeliveryView:
        """Send one delivery again now: a pending one is due at once; a delivered or given-up
        one gets a new delivery of the same event (same ``webhook-id``, fresh back-off)."""
        now = utcnow()
        with self.db.transaction() as session:
            hook = _webhook(session, project_id, webhook_id)
            if (
                not (delivery_id.isascii() and delivery_id.isdigit())
                or len(delivery_id) > 18
                or int(delivery_id) > MAX_ROW_ID  # no row has it; PostgreSQL would 500
            ):
                raise NotFound(f"Delivery {delivery_id} of webhook {webhook_id} not found.")
            old = session.execute(
                sa.select(WebhookDelivery).where(
                    WEBHOOK_DELIVERIES.c.id == int(delivery_id),
                    WEBHOOK_DELIVERIES.c.webhook_id == webhook_id,
                )
            ).scalar_one_or_none()
            if old is None:
                raise NotFound(f"Delivery {delivery_id} of webhook {webhook_id} not found.")
            if old.state == "pending":
                session.execute(
                    sa.update(WEBHOOK_DELIVERIES)
                    .where(WEBHOOK_DELIVERIES.c.id == old.id)
                    .values(next_attempt_at=now, published_at=None)
                )
                row = session.get_one(WebhookDelivery, old.id, populate_existing=True)
            else:
                row = _pending(session, hook, old.event_id, old.event, now, body=old.body)
            session.info.setdefault(NEW_DELIVERIES, []).append(row.id)
        return DeliveryView(row, [])

    def replay(self, project_id: str, webhook_id: str, from_event_id: int) -> Replay:
        """Queue again every event from ``from_event_id`` on that this webhook was sent (its
        deliveries keep the bodies) or that the log still holds and the webhook subscribes to;
        events with a pending delivery are left to it."""
        now = utcnow()
        with self.db.transaction() as session:
            hook = _webhook(session, project_id, webhook_id)
            d = WEBHOOK_DELIVERIES.c
            sent = session.execute(
                sa.select(WebhookDelivery)
                .where(d.webhook_id == hook.id, d.event_id >= from_event_id)
                .order_by(d.event_id, d.id)
            ).scalars()
            latest: dict[int, WebhookDelivery] = {}
            for row in sent:
                latest[row.event_id] = row
            subscribed = list(hook.events or [])
            query = sa.select(EVENTS.c.id, EVENTS.c.event).where(
                EVENTS.c.project_id == project_id, EVENTS.c.id >= from_event_id
            )
            if EVERY_EVENT not in subscribed:
                query = query.where(EVENTS.c.event.in_(subscribed))
            logged = dict(session.execute(query.order_by(EVENTS.c.id).limit(MAX_REPLAY + 1)).all())
            event_ids = sorted(set(latest) | set(logged))
            more = len(event_ids) > MAX_REPLAY
            event_ids = event_ids[:MAX_REPLAY]
            queued: list[int] = []
            for event_id in event_ids:
                old = latest.get(event_id)
                if old is not None and old.state == "pending":
                    continue
                if old is not None:
                    row = _pending(session, hook, event_id, old.event, now, body=old.body)
                else:
                    row = _pending(session, hook, event_id, logged[event_id], now)
                queued.append(int(row.id or 0))
            session.info.setdefault(NEW_DELIVERIES, []).extend(queued)
        return Replay(
            len(queued),
            event_ids[0] if event_ids else None,
            event_ids[-1] if event_ids else None,
            more,
        )


def _webhook(session: Session, project_id: str, webhook_id: str) -> Webhook:
    row = session.execute(
        sa.select(Webhook).where(WEBHOOKS.c.id == webhook_id, WEBHOOKS.c.project_id == project_id)
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"Webhook {webhook_id} not found.")
    return row


def _pending(
    session: Session, hook: Webhook, event_id: int, event: str, now: datetime, body: str = ""
) -> WebhookDelivery:
    """A new delivery of the event to ``hook``, due ``now``: a copy of an earlier delivery
    keeps its ``body``; an empty one is rendered from the event log when it is sent."""
    row = WebhookDelivery(
        webhook_id=hook.id, project_id=hook.project_id, event_id=event_id, event=event, body=body
    )
    row.created_at = row.next_attempt_at = now
    session.add(row)
    session.flush()
    return row
