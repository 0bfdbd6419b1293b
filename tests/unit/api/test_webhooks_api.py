"""Webhooks through the HTTP API (issue 14, part 1): the resource, RBAC and tenants, bad input,
and every event of the project becoming a signed delivery (sent here by calling the task's
domain function against a receiver thread on loopback)."""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec
import pytest
import redis
from litestar.testing import TestClient

from cloudbackup.api.schemas.events import event_out
from cloudbackup.domain.webhook_deliveries import HttpPoster, send_delivery
from cloudbackup.queue.names import SEND_WEBHOOK_TASK, QueueNames
from cloudbackup.queue.publishing import CeleryDispatcher
from cloudbackup.server import create_app
from cloudbackup.store.tables import Event, WebhookDelivery
from factories import rows
from factories.api import OTHER_PROJECT, PROJECT, headers, start_backup, token
from factories.webhook_receiver import Receiver

BASE = f"/v2/{PROJECT}/webhooks"


@pytest.fixture
def open_settings(settings):
    return msgspec.structs.replace(settings, webhook_allow_private=True)


@pytest.fixture
def open_client(open_settings, db):
    """The API with CLOUDBACKUP_WEBHOOK_ALLOW_PRIVATE=true (receivers on loopback)."""
    app = create_app(
        open_settings, database=db, dispatcher=CeleryDispatcher.from_settings(open_settings)
    )
    with TestClient(app=app) as test_client:
        yield test_client


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


def create(client, secret, **body: Any):
    body.setdefault("events", ["*"])
    return client.post(BASE, json=body, headers=headers(secret))


def published_deliveries(settings) -> list[str]:
    broker = redis.Redis.from_url(settings.broker_url)
    queue = QueueNames(settings.backup_queue).webhooks
    found = []
    for raw in broker.lrange(queue, 0, -1):
        message = json.loads(raw)
        assert message["headers"]["task"] == SEND_WEBHOOK_TASK
        found.append(json.loads(base64.b64decode(message["body"]))[0][0])
    return found


def deliveries_of(db, webhook_id: str) -> list[WebhookDelivery]:
    import sqlalchemy as sa

    with db.read() as session:
        query = sa.select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
        return list(session.execute(query.order_by(WebhookDelivery.id)).scalars())


def send_all(db, settings, webhook_id: str) -> list[str]:
    poster = HttpPoster(2.0)
    return [send_delivery(db, d.id, poster, settings) for d in deliveries_of(db, webhook_id)]


# -- the resource ---------------------------------------------------------------------------------


def test_create_shows_the_secret_once_and_reads_never_do(open_client, db, receiver):
    secret = token(db)
    created = create(open_client, secret, url=receiver.url, description="ops")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert len(base64.b64decode(body["secret"].removeprefix("whsec_"))) == 32
    assert body["url"] == receiver.url and body["events"] == ["*"]
    assert created.headers["location"].endswith(f"{BASE}/{body['id']}")

    one = open_client.get(f"{BASE}/{body['id']}", headers=headers(secret))
    listed = open_client.get(BASE, headers=headers(secret))
    assert one.status_code == 200 and "secret" not in one.json()
    assert [w["id"] for w in listed.json()["webhooks"]] == [body["id"]]
    assert body["secret"] not in one.text + listed.text

    assert open_client.delete(f"{BASE}/{body['id']}", headers=headers(secret)).status_code == 204
    gone = open_client.get(f"{BASE}/{body['id']}", headers=headers(secret))
    assert gone.status_code == 404


def test_admin_manages_observer_reads_and_other_projects_see_nothing(open_client, db, receiver):
    admin = token(db)
    hook = create(open_client, admin, url=receiver.url).json()
    for role in ("observer", "cloudbackup:creator"):
        other_role = token(db, role=role)
        assert create(open_client, other_role, url=receiver.url).status_code == 403, role
        refused = open_client.delete(f"{BASE}/{hook['id']}", headers=headers(other_role))
        assert refused.status_code == 403
    observer = token(db, role="observer")
    assert open_client.get(f"{BASE}/{hook['id']}", headers=headers(observer)).status_code == 200
    assert (
        open_client.get(f"{BASE}/{hook['id']}/deliveries", headers=headers(observer)).json()[
            "deliveries"
        ]
        == []
    )

    stranger = token(db, OTHER_PROJECT)
    theirs = f"/v2/{OTHER_PROJECT}/webhooks/{hook['id']}"
    assert open_client.get(theirs, headers=headers(stranger)).status_code == 404
    assert open_client.delete(theirs, headers=headers(stranger)).status_code == 404
    assert open_client.get(f"{BASE}/{hook['id']}", headers=headers(stranger)).status_code == 404


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"events": ["*"]}, "url is required"),
        ({"url": "ftp://example.com/", "events": ["*"]}, "http:// or https://"),
        ({"url": "http://93.184.216.34/", "events": []}, "events is required"),
        ({"url": "http://93.184.216.34/", "events": ["*", "backup_completed"]}, "list it alone"),
        ({"url": "http://93.184.216.34/", "events": ["Bad Name"]}, "not an event name"),
        ({"url": "http://93.184.216.34/", "events": ["a", "a"]}, "listed twice"),
        ({"url": "http://93.184.216.34/", "events": ["*"], "description": 7}, "description"),
        ({"url": "http://93.184.216.34/", "events": ["*"], "secret": "x"}, "unknown field"),
        ({"url": "http://127.0.0.1:9/", "events": ["*"]}, "CLOUDBACKUP_WEBHOOK_ALLOW_PRIVATE"),
        ({"url": "http://169.254.169.254/", "events": ["*"]}, "link-local"),
    ],
)
def test_bad_bodies_and_private_urls_are_400_json(client, db, body, problem):
    response = client.post(BASE, json=body, headers=headers(token(db)))
    assert response.status_code == 400, response.text
    assert problem in json.dumps(response.json())


def test_bad_paths_and_queries_are_4xx_json(open_client, db, receiver):
    secret = token(db)
    hook = create(open_client, secret, url=receiver.url).json()
    for method, path, body in [
        ("GET", f"{BASE}/{hook['id']}/deliveries?limit=0", None),
        ("GET", f"{BASE}/{hook['id']}/deliveries?marker=x", None),
        ("POST", f"{BASE}/{hook['id']}/deliveries/abc/retries", None),
        ("POST", f"{BASE}/{hook['id']}/deliveries/99/retries", None),
        ("POST", f"{BASE}/{hook['id']}/replays", {"from_event_id": "x"}),
        ("POST", f"{BASE}/{hook['id']}/replays", {}),
        ("POST", f"{BASE}/nope/replays", {"from_event_id": 1}),
    ]:
        response = open_client.request(method, path, json=body, headers=headers(secret))
        assert response.status_code in (400, 404), (path, response.text)
        assert "message" in response.json()


# -- events become signed deliveries -------------------------------------------------------------


def test_every_event_is_delivered_signed_with_the_event_lists_body(
    open_client, open_settings, db, receiver
):
    secret = token(db)
    hook = create(open_client, secret, url=receiver.url).json()
    receiver.set_secret(hook["secret"])
    activated = open_client.post(
        f"/v2/{PROJECT}/events",
        json={"event": "agent_activate", "mode": "active"},
        headers=headers(secret),
    )
    assert activated.status_code == 202
    agent = rows.agent(db)
    config = rows.configuration(db, agent)
    started = start_backup(open_client, secret, config.id)  # B1's asyncio path
    assert started.status_code == 201, started.text

    deliveries = deliveries_of(db, hook["id"])
    assert [d.event for d in deliveries] == ["agent_activate", "backup_start_request"]
    # Published after the commit, one message per delivery.
    assert sorted(published_deliveries(open_settings)) == sorted(str(d.id) for d in deliveries)

    assert send_all(db, open_settings, hook["id"]) == ["delivered", "delivered"]
    got = receiver.received
    assert [r["valid"] for r in got] == [True, True]
    listed = open_client.get(
        f"/v2/{PROJECT}/events", params={"sort_dir": "asc"}, headers=headers(secret)
    ).json()["events"]
    assert [json.loads(r["body"]) for r in got] == listed
    assert [r["id"] for r in got] == [e["id"] for e in listed]  # webhook-id is the event id

    page = open_client.get(f"{BASE}/{hook['id']}/deliveries", headers=headers(secret)).json()
    newest = page["deliveries"][0]
    assert newest["state"] == "delivered" and newest["last_status_code"] == 200
    assert newest["attempt_log"][0]["status"] == "delivered"
    assert newest["next_attempt_time"] is None


def test_only_subscribed_events_of_the_own_project_are_queued(open_client, db, receiver):
    secret = token(db)
    hook = create(open_client, secret, url=receiver.url, events=["backup_start_request"]).json()
    other_secret = token(db, OTHER_PROJECT)
    for who, project in ((secret, PROJECT), (other_secret, OTHER_PROJECT)):
        open_client.post(
            f"/v2/{project}/events",
            json={"event": "agent_activate", "mode": "idle"},
            headers=headers(who),
        )
    config = rows.configuration(db, rows.agent(db))
    start_backup(open_client, secret, config.id)
    other_config = rows.configuration(db, rows.agent(db, OTHER_PROJECT))
    start_backup(open_client, other_secret, other_config.id, project_id=OTHER_PROJECT)
    assert [d.event for d in deliveries_of(db, hook["id"])] == ["backup_start_request"]


def test_a_failed_delivery_can_be_resent_and_a_webhook_replayed(
    open_client, open_settings, db, receiver
):
    secret = token(db)
    hook = create(open_client, secret, url=receiver.url).json()
    receiver.set_secret(hook["secret"])
    for mode in ("active", "idle"):
        open_client.post(
            f"/v2/{PROJECT}/events",
            json={"event": "agent_activate", "mode": mode},
            headers=headers(secret),
        )
    receiver.set_status(503)
    assert send_all(db, open_settings, hook["id"]) == ["retry", "retry"]
    first, _second = deliveries_of(db, hook["id"])
    assert first.last_status_code == 503 and first.state == "pending"

    receiver.set_status(200)
    resent = open_client.post(
        f"{BASE}/{hook['id']}/deliveries/{first.id}/retries", headers=headers(secret)
    )
    assert resent.status_code == 202, resent.text
    assert send_delivery(db, first.id, HttpPoster(2.0), open_settings) == "delivered"

    # A replay from the first event queues both events again (the delivered one too).
    replay = open_client.post(
        f"{BASE}/{hook['id']}/replays",
        json={"from_event_id": str(first.event_id)},
        headers=headers(secret),
    )
    assert replay.status_code == 202, replay.text
    assert replay.json()["queued"] == 1  # the second is still pending: left to its own retries
    assert replay.json()["first_event_id"] == str(first.event_id)
    again = deliveries_of(db, hook["id"])[-1]
    assert again.event_id == first.event_id and again.state == "pending"
    assert send_delivery(db, again.id, HttpPoster(2.0), open_settings) == "delivered"
    ids = [r["id"] for r in receiver.received if r["valid"]]
    assert ids.count(str(first.event_id)) >= 2


def test_delivery_body_is_the_event_lists_rendering(db):
    from cloudbackup.domain.webhook_deliveries import event_body
    from cloudbackup.store.tables import utcnow

    row = Event(id=12, time=utcnow(), event="backup_completed", project_id=PROJECT)
    row.members = {"backup": {"id": "b"}, "request_id": "r", "note": "é"}
    assert json.loads(event_body(row)) == event_out(row)
