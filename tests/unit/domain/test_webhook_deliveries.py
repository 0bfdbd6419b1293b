"""Webhook deliveries: the back-off schedule, one try of a delivery against a real receiver
thread (2xx, other codes, redirects, refused connections, slow receivers, SSRF at send time),
the lease, the sweep that re-publishes due deliveries, and the event log's retention."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgspec
import pytest
import sqlalchemy as sa

from cloudbackup.domain.event_stream import purge_expired_events
from cloudbackup.domain.webhook_deliveries import (
    HttpPoster,
    republish_due,
    retry_delay,
    send_delivery,
)
from cloudbackup.domain.webhooks import WebhookService, check_draft
from cloudbackup.store.repositories import EventRepository
from cloudbackup.store.tables import EVENTS, WebhookAttempt, WebhookDelivery, utcnow
from factories.api import PROJECT
from factories.webhook_receiver import Receiver


class Recorder:
    """A Dispatcher that records what was published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str]] = []

    def publish(self, kind, resource_id, *, agent_id=None) -> bool:
        self.published.append((kind, resource_id))
        return True


@pytest.fixture
def open_settings(settings):
    return msgspec.structs.replace(
        settings, webhook_allow_private=True, webhook_timeout_seconds=1.0
    )


def make_webhook(db, url: str, events=("*",)):
    draft = check_draft(url, list(events), "", allow_private=True)
    return WebhookService(db, allow_private=True).create(PROJECT, draft)


def write_event(db, event: str = "backup_completed", project_id: str = PROJECT) -> list[int]:
    """An event written as every writer does; returns the deliveries its transaction queued."""
    with db.transaction() as session:
        EventRepository(session).insert(event=event, project_id=project_id, members={"x": 1})
        return list(session.info.get("cloudbackup.new_webhook_deliveries", []))


def delivery(db, delivery_id: int) -> WebhookDelivery:
    with db.read() as session:
        return session.get_one(WebhookDelivery, delivery_id)


def attempts(db, delivery_id: int) -> list[WebhookAttempt]:
    with db.read() as session:
        query = sa.select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)
        return list(session.execute(query.order_by(WebhookAttempt.id)).scalars())


# -- the schedule --------------------------------------------------------------------------------


def test_back_off_starts_at_a_few_seconds_doubles_and_is_capped_at_an_hour():
    waits = [retry_delay(n, 5.0).total_seconds() for n in range(1, 14)]
    assert waits[:5] == [5, 10, 20, 40, 80]
    assert max(waits) == 3600 and waits[-1] == 3600


def test_a_receiver_back_within_a_minute_gets_its_events_within_the_next_minute():
    # An event first tried at t=0 while the receiver is down, for any outage up to 60 s.
    for outage in range(1, 61):
        t, n = 0.0, 0
        while t < outage:
            n += 1
            t += retry_delay(n, 5.0).total_seconds()
        assert t - outage <= 60, outage


def test_retries_go_on_for_at_least_a_day(settings):
    assert settings.webhook_retry_hours >= 24
    total, n = 0.0, 0
    while total < settings.webhook_retry_hours * 3600:
        n += 1
        total += retry_delay(n, settings.webhook_first_retry_seconds).total_seconds()
    assert n >= 24  # hourly at the end: not one lonely try a day later


# -- one try -------------------------------------------------------------------------------------


def test_a_2xx_delivers_once_and_a_second_message_sends_nothing(db, open_settings):
    with Receiver() as receiver:
        hook = make_webhook(db, receiver.url)
        receiver.set_secret(hook.secret)
        [delivery_id] = write_event(db)
        poster = HttpPoster(1.0)
        assert send_delivery(db, delivery_id, poster, open_settings) == "delivered"
        assert send_delivery(db, delivery_id, poster, open_settings) == "noop"
        assert [r["valid"] for r in receiver.received] == [True]
    row = delivery(db, delivery_id)
    assert row.state == "delivered" and row.attempts == 1 and row.body
    assert [a.status for a in attempts(db, delivery_id)] == ["delivered"]


@pytest.mark.parametrize("status", [500, 404, 302])
def test_other_answers_and_redirects_are_retried_after_the_first_wait(db, open_settings, status):
    with Receiver() as receiver:
        receiver.set_status(status)
        hook = make_webhook(db, receiver.url)
        receiver.set_secret(hook.secret)
        [delivery_id] = write_event(db)
        before = utcnow()
        assert send_delivery(db, delivery_id, HttpPoster(1.0), open_settings) == "retry"
        assert len(receiver.received) == 1  # a redirect is not followed
    row = delivery(db, delivery_id)
    assert row.state == "pending" and row.last_status_code == status and row.attempts == 1
    wait = (row.next_attempt_at.replace(tzinfo=before.tzinfo) - before).total_seconds()
    assert 5 <= wait <= 7
    [attempt] = attempts(db, delivery_id)
    assert attempt.status == "failed" and attempt.status_code == status
    # Not due yet: a duplicate message does nothing; once due it is tried again.
    assert send_delivery(db, delivery_id, HttpPoster(1.0), open_settings) == "noop"
    later = utcnow() + timedelta(seconds=10)
    assert send_delivery(db, delivery_id, HttpPoster(1.0), open_settings, now=later) == "retry"


def test_a_refused_connection_and_a_slow_receiver_are_failed_tries(db, open_settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once closed
    make_webhook(db, f"http://127.0.0.1:{port}/hook", events=["backup_completed"])
    [refused] = write_event(db)
    assert send_delivery(db, refused, HttpPoster(1.0), open_settings) == "retry"
    assert "Connect" in (delivery(db, refused).last_error or "")

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self):
            time.sleep(3)

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        make_webhook(db, f"http://127.0.0.1:{server.server_address[1]}/", events=["slow"])
        [slow] = write_event(db, "slow")
        started = time.monotonic()
        assert send_delivery(db, slow, HttpPoster(1.0), open_settings) == "retry"
        assert time.monotonic() - started < 2.5  # the try's time is bounded
        assert "Timeout" in (delivery(db, slow).last_error or "")
    finally:
        server.shutdown()
        server.server_close()


def test_private_addresses_are_refused_at_send_time_too(db, settings):
    with Receiver() as receiver:
        make_webhook(db, receiver.url)  # created while private addresses were allowed
        [delivery_id] = write_event(db)
        assert send_delivery(db, delivery_id, HttpPoster(1.0), settings) == "retry"
        assert receiver.received == []
    assert "CLOUDBACKUP_WEBHOOK_ALLOW_PRIVATE" in (delivery(db, delivery_id).last_error or "")


def test_a_delivery_is_given_up_once_older_than_the_retry_window(db, open_settings):
    with Receiver() as receiver:
        receiver.set_status(500)
        make_webhook(db, receiver.url)
        [delivery_id] = write_event(db)
        short = msgspec.structs.replace(open_settings, webhook_retry_hours=0.0)
        assert send_delivery(db, delivery_id, HttpPoster(1.0), short) == "failed"
    row = delivery(db, delivery_id)
    assert row.state == "failed" and row.last_status_code == 500


# -- the sweep and the log -----------------------------------------------------------------------


def test_the_sweep_publishes_due_retries_and_lost_messages_once(db, open_settings):
    make_webhook(db, "http://127.0.0.1:9/")  # nothing listens: every try fails
    [delivery_id] = write_event(db)
    recorder = Recorder()
    now = utcnow()
    assert republish_due(db, recorder, now) == 0  # just published after its commit
    assert republish_due(db, recorder, now + timedelta(seconds=31)) == 1  # that message was lost
    assert republish_due(db, recorder, now + timedelta(seconds=32)) == 0  # not again at once
    taken = now + timedelta(seconds=33)
    assert send_delivery(db, delivery_id, HttpPoster(1.0), open_settings, now=taken) == "retry"
    due = delivery(db, delivery_id).next_attempt_at.replace(tzinfo=now.tzinfo)
    assert republish_due(db, recorder, due - timedelta(seconds=1)) == 0
    assert republish_due(db, recorder, due) == 1  # the retry came due
    assert recorder.published == [("webhook", str(delivery_id))] * 2


def test_events_a_pending_delivery_needs_outlive_the_event_lists_retention(db, open_settings):
    make_webhook(db, "http://127.0.0.1:9/", events=["kept"])
    write_event(db, "kept")
    write_event(db, "not_subscribed")
    later = utcnow() + timedelta(hours=25)
    assert purge_expired_events(db, timedelta(hours=24), later, batch=1) == 1
    with db.read() as session:
        left = list(session.execute(sa.select(EVENTS.c.event)).scalars())
    assert left == ["kept"]


def test_deleting_a_webhook_stops_its_deliveries(db, open_settings):
    with Receiver() as receiver:
        hook = make_webhook(db, receiver.url)
        [delivery_id] = write_event(db)
        WebhookService(db, allow_private=True).delete(PROJECT, hook.id)
        assert send_delivery(db, delivery_id, HttpPoster(1.0), open_settings) == "noop"
        assert write_event(db) == []
        assert receiver.received == []


def test_every_writer_of_events_queues_deliveries_the_guards_anomaly_too(db, open_settings):
    """No writer needs to know of webhooks: the event insert itself queues the deliveries."""
    from cloudbackup.domain.anomalies import EVENT as ANOMALY_EVENT
    from cloudbackup.domain.events import record_backup_event
    from factories import rows

    hook = make_webhook(db, "http://127.0.0.1:9/", events=[ANOMALY_EVENT])
    backup = rows.backup(db, rows.configuration(db, rows.agent(db)).id)
    with db.transaction() as session:
        record_backup_event(session, backup, ANOMALY_EVENT, extra={"anomaly": {"id": "a"}})
        record_backup_event(session, backup, "backup_completed")
    with db.read() as session:
        query = sa.select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id)
        found = list(session.execute(query).scalars())
    assert [d.event for d in found] == [ANOMALY_EVENT]
