"""Sending webhook deliveries: at least once, signed, with exponential back-off.

A delivery row is written with its event (``store.webhook_log``) and published after the commit
(:func:`publisher`, a ``Database.after_commit`` hook). :func:`send_delivery` takes a due row with
a compare-and-set (a lease, so a duplicate message sends nothing), POSTs it and records the
attempt: a 2xx answer delivers it; anything else (another status, a redirect, a timeout, a
refused connection, an address the SSRF rule refuses now) schedules the next try after
:func:`retry_delay`, until the delivery is ``webhook_retry_hours`` old. :func:`republish_due`
(beat, every few seconds) publishes the retries that came due and any delivery whose message
was lost, so a worker, broker or receiver restart loses nothing.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx
import sqlalchemy as sa

from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.domain.errors import InvalidInput
from cloudbackup.domain.webhooks import check_url, signed_headers
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database, rowcount
from cloudbackup.store.tables import (
    EVENTS,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_DELIVERIES,
    WEBHOOKS,
    as_utc,
    utcnow,
)
from cloudbackup.store.webhook_log import NEW_DELIVERIES, relax_commit

log = logging.getLogger("cloudbackup.webhooks")

LONGEST_WAIT = timedelta(hours=1)
MAX_BODY_BYTES = 1024 * 1024  # an event larger than this is not sent (none is, today)
MAX_ANSWER_BYTES = 64 * 1024  # what is read of a receiver's answer; the rest is dropped
LEASE_MARGIN = timedelta(seconds=30)  # a sender that dies mid-POST leaves the row for another
REPUBLISH_AFTER = timedelta(seconds=30)  # a published delivery not taken by then is re-published
SWEEP_BATCH = 1000
PURGE_BATCH = 5000


@dataclass(frozen=True, slots=True)
class Answer:
    """What one POST got: the status code (None: no answer at all) or why it failed."""

    status_code: int | None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of a delivery as its log keeps it (the columns of a ``webhook_attempts`` row)."""

    time: datetime
    status: str  # delivered|failed (a failed try may be retried)
    status_code: int | None
    error: str | None
    duration_ms: int = 0
    next_attempt_at: datetime | None = None


class Poster(Protocol):
    """POSTs one body; never raises: every failure is an :class:`Answer` with an error."""

    def post(
        self, url: str, body: bytes, headers: dict[str, str], addresses: list[str] | None
    ) -> Answer: ...


def retry_delay(attempts: int, first_seconds: float) -> timedelta:
    """The wait after the ``attempts``-th failed try: first, 2x, 4x, ... capped at an hour."""
    return min(timedelta(seconds=first_seconds * 2 ** min(max(attempts - 1, 0), 30)), LONGEST_WAIT)


def event_body(row: Any) -> bytes:
    """The event (an ``Event`` or a row with its columns) as the event lists render it
    (``api.schemas.events.event_out``, tested equal)."""
    time_text = as_utc(row.time).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    document: dict[str, Any] = {"id": str(row.id), "time": time_text, "event": row.event}
    document.update(row.members or {})
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def publisher(dispatcher: Callable[[], Dispatcher]) -> Callable[[dict[Any, Any]], None]:
    """The ``Database.after_commit`` hook publishing the deliveries a transaction wrote."""

    def publish(info: dict[Any, Any]) -> None:
        for delivery_id in info.pop(NEW_DELIVERIES, None) or ():
            dispatcher().publish("webhook", str(delivery_id))

    return publish


class HttpPoster:
    """:class:`Poster` over httpx: no redirects, a deadline per try, the answer read only up
    to :data:`MAX_ANSWER_BYTES`, and the connection made to the address the SSRF check
    approved (the Host header and TLS name stay the URL's)."""

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout = timeout_seconds
        # One client per process, kept: a new client builds an SSL context (milliseconds of
        # CPU) and a new connection for every POST.
        self._client: tuple[int, httpx.Client] | None = None

    def client(self) -> httpx.Client:
        if self._client is None or self._client[0] != os.getpid():
            limits = httpx.Limits(max_connections=20, max_keepalive_connections=10)
            client = httpx.Client(follow_redirects=False, timeout=self.timeout, limits=limits)
            self._client = (os.getpid(), client)
        return self._client[1]

    def post(
        self, url: str, body: bytes, headers: dict[str, str], addresses: list[str] | None
    ) -> Answer:
        target, extensions, sent_headers = url, {}, dict(headers)
        if addresses:
            parts = urlsplit(url)
            host = parts.hostname or ""
            address = addresses[0]
            literal = f"[{address}]" if ":" in address else address
            netloc = literal if parts.port is None else f"{literal}:{parts.port}"
            target = urlunsplit(parts._replace(netloc=netloc))
            sent_headers["host"] = parts.netloc.rsplit("@", 1)[-1]
            extensions = {"sni_hostname": host}
        deadline = time.monotonic() + self.timeout
        try:
            with self.client().stream(
                "POST", target, content=body, headers=sent_headers, extensions=extensions
            ) as response:
                read = 0
                for chunk in response.iter_raw():
                    read += len(chunk)
                    if read >= MAX_ANSWER_BYTES or time.monotonic() > deadline:
                        break
                return Answer(response.status_code, None if response.is_success else _why(response))
        except httpx.HTTPError as exc:
            return Answer(None, f"{type(exc).__name__}: {exc}"[:500])


def _why(response: httpx.Response) -> str:
    if response.is_redirect:
        return f"HTTP {response.status_code}: redirects are not followed"
    return f"HTTP {response.status_code}"


def send_delivery(
    db: Database, delivery_id: int, poster: Poster, settings: Settings, now: datetime | None = None
) -> str:
    """One try of one delivery: ``delivered``, ``retry``, ``failed`` (given up), or ``noop``
    (not due, already taken by another sender, or gone)."""
    now = now or utcnow()
    lease = timedelta(seconds=settings.webhook_timeout_seconds) + LEASE_MARGIN
    d = WEBHOOK_DELIVERIES.c
    with db.transaction() as session:
        relax_commit(session)  # a lease lost in a crash only allows a duplicate POST
        delivery = session.execute(
            sa.update(WEBHOOK_DELIVERIES)
            .where(d.id == delivery_id, d.state == "pending", d.next_attempt_at <= now)
            .values(next_attempt_at=now + lease)
            .returning(d.id, d.webhook_id, d.event_id, d.body, d.attempts, d.created_at)
        ).first()
        if delivery is None:
            return "noop"
        e = EVENTS.c
        found = session.execute(
            sa.select(WEBHOOKS.c.url, WEBHOOKS.c.secret, e.id, e.time, e.event, e.members)
            .outerjoin(EVENTS, e.id == delivery.event_id)
            .where(WEBHOOKS.c.id == delivery.webhook_id)
        ).first()
        if found is None:  # deleted meanwhile (its rows go with it)
            return "noop"
        url, secret = found.url, found.secret
        body = delivery.body.encode()
        if not body:
            if found.id is None:
                gone = Attempt(now, "failed", None, "the event is no longer in the log")
                _finish(session, delivery, gone)
                return "failed"
            body = event_body(found)  # stored with the attempt's outcome, below
    started = time.monotonic()
    answer = _post(url, secret, delivery, body, poster, settings)
    elapsed = time.monotonic() - started
    duration = int(elapsed * 1000)
    ended = now + timedelta(seconds=elapsed)
    with db.transaction() as session:
        relax_commit(session)  # an outcome lost in a crash means one more POST, no loss
        if answer.delivered:
            delivered = Attempt(ended, "delivered", answer.status_code, None, duration)
            _finish(session, delivery, delivered, body)
            return "delivered"
        failed = Attempt(ended, "failed", answer.status_code, answer.error, duration)
        give_up = ended - as_utc(delivery.created_at) >= timedelta(
            hours=settings.webhook_retry_hours
        )
        if give_up:
            _finish(session, delivery, failed, body)
            log.error("webhook delivery %s given up: %s", delivery_id, answer.error)
            return "failed"
        due = ended + retry_delay(delivery.attempts + 1, settings.webhook_first_retry_seconds)
        retry = replace(failed, next_attempt_at=due)
        kept = session.execute(
            sa.update(WEBHOOK_DELIVERIES)
            .where(d.id == delivery_id)
            .values(body=body.decode(), next_attempt_at=due, **_latest(delivery, retry))
        )
        if rowcount(kept):  # not when its webhook was deleted meanwhile
            _record(session, delivery, retry)
    log.info("webhook delivery %s failed (%s), next try %s", delivery_id, answer.error, due)
    return "retry"


def _post(
    url: str,
    secret: str,
    delivery: Any,
    body: bytes,
    poster: Poster,
    settings: Settings,
) -> Answer:
    if len(body) > MAX_BODY_BYTES:
        return Answer(None, f"the event is over {MAX_BODY_BYTES} bytes")
    try:  # again at every try: the name may resolve elsewhere now
        addresses = check_url(url, allow_private=settings.webhook_allow_private)
    except InvalidInput as exc:
        return Answer(None, "; ".join(exc.errors)[:500] or str(exc))
    headers = signed_headers(secret, str(delivery.event_id), int(time.time()), body)
    return poster.post(url, body, headers, addresses)


def _finish(session: Any, delivery: Any, attempt: Attempt, body: bytes | None = None) -> None:
    """End the delivery with ``attempt``: delivered, or given up."""
    kept = {} if body is None else {"body": body.decode()}
    delivered = attempt.status == "delivered"
    changed = session.execute(
        sa.update(WEBHOOK_DELIVERIES)
        .where(WEBHOOK_DELIVERIES.c.id == delivery.id)
        .values(
            **kept,
            **_latest(delivery, attempt),
            state=attempt.status,
            delivered_at=attempt.time if delivered else None,
        )
    )
    if rowcount(changed):  # not when its webhook was deleted meanwhile
        _record(session, delivery, attempt)


def _latest(delivery: Any, attempt: Attempt) -> dict[str, Any]:
    """The columns of a delivery that repeat ``attempt``, its latest try."""
    return {
        "attempts": delivery.attempts + 1,
        "last_attempt_at": attempt.time,
        "last_status_code": attempt.status_code,
        "last_error": attempt.error,
    }


def _record(session: Any, delivery: Any, attempt: Attempt) -> None:
    row = {"delivery_id": delivery.id, "webhook_id": delivery.webhook_id, **asdict(attempt)}
    session.execute(sa.insert(WEBHOOK_ATTEMPTS).values(row))


def republish_due(db: Database, dispatcher: Dispatcher, now: datetime | None = None) -> int:
    """Publish the deliveries that are due and have no message on its way: retries whose
    time came, and deliveries published over :data:`REPUBLISH_AFTER` ago and never taken
    (the message was lost, or the publish after the commit failed)."""
    now = now or utcnow()
    d = WEBHOOK_DELIVERIES.c
    last_publish = sa.func.coalesce(d.published_at, d.created_at)
    with db.transaction() as session:
        due = list(
            session.execute(
                sa.select(d.id)
                .where(
                    d.state == "pending",
                    d.next_attempt_at <= now,
                    sa.or_(last_publish < d.next_attempt_at, last_publish < now - REPUBLISH_AFTER),
                )
                .order_by(d.next_attempt_at)
                .limit(SWEEP_BATCH)
            ).scalars()
        )
        if due:
            session.execute(
                sa.update(WEBHOOK_DELIVERIES).where(d.id.in_(due)).values(published_at=now)
            )
    return sum(dispatcher.publish("webhook", str(delivery_id)) for delivery_id in due)


def purge_deliveries(db: Database, retention: timedelta, now: datetime | None = None) -> int:
    """Forget finished deliveries (and their attempts) older than ``retention``."""
    cutoff = (now or utcnow()) - retention
    d = WEBHOOK_DELIVERIES.c
    removed = 0
    while True:
        with db.transaction() as session:
            old = list(
                session.execute(
                    sa.select(d.id)
                    .where(d.state != "pending", d.created_at < cutoff)
                    .limit(PURGE_BATCH)
                ).scalars()
            )
            if old:
                session.execute(
                    sa.delete(WEBHOOK_ATTEMPTS).where(WEBHOOK_ATTEMPTS.c.delivery_id.in_(old))
                )
                session.execute(sa.delete(WEBHOOK_DELIVERIES).where(d.id.in_(old)))
        removed += len(old)
        if len(old) < PURGE_BATCH:
            return removed
