"""EV1-EV4 and EV8 through the HTTP API, and the retention of the event stream."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
import redis
import sqlalchemy as sa

from cloudbackup.domain.event_stream import purge_expired_events
from cloudbackup.store.tables import EVENTS, utcnow
from factories import rows
from factories.api import OTHER_PROJECT, PROJECT, agent_token_of, headers, start_backup, token

BASE = f"/v2/{PROJECT}"


@pytest.fixture
def secret(db):
    return token(db)


def count_events(db) -> int:
    with db.transaction() as session:
        return session.execute(sa.select(sa.func.count()).select_from(EVENTS)).scalar_one()


def events_of(client, secret, path, **query):
    response = client.get(f"{BASE}{path}", params=query, headers=headers(secret))
    assert response.status_code == 200, response.text
    return response.json()


def post_agent_event(client, secret, agent_id, body, agent_header=True):
    """EV3 as the agent: with its own token and X-Agent-Id (or another header, or none)."""
    extra = {"X-Agent-Id": agent_id} if agent_header is True else {}
    if agent_header is True and body.get("event") != "agent_activate":
        secret = agent_token_of(client, agent_id)
    if isinstance(agent_header, str):
        extra = {"X-Agent-Id": agent_header}
    return client.post(
        f"{BASE}/agents/{agent_id}/events", json=body, headers=headers(secret, **extra)
    )


# -- EV1 / EV2 ----------------------------------------------------------------------------------


def test_project_activation_is_202_without_body_and_shows_in_the_project_stream(client, secret):
    response = client.post(
        f"{BASE}/events",
        json={"event": "agent_activate", "mode": "active"},
        headers=headers(secret),
    )

    assert response.status_code == 202
    assert response.content == b""
    events = events_of(client, secret, "/events")["events"]
    assert [e["event"] for e in events] == ["agent_activate"]
    event = events[0]
    assert list(event) == ["id", "time", "event", "mode", "request_id"]  # no `agent` (§15.4)
    assert event["id"].isdigit() and event["mode"] == "active"
    assert event["time"].endswith("Z")


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        ({"event": "agent_activate"}, "application/json", "mode is required"),
        ({"mode": "idle"}, "application/json", "event is required."),
        (
            {"event": "startup", "mode": "idle"},
            "application/json",
            "event must be 'agent_activate'",
        ),
        ({"event": "agent_activate", "mode": "fast"}, "application/json", "mode must be one of"),
        ({"event": "agent_activate", "mode": "idle", "x": 1}, "application/json", "unknown field"),
        ({"event": "agent_activate", "mode": 3}, "application/json", "Expected `str`"),
        ([], "application/json", "Expected `object`"),
        ({"event": "agent_activate", "mode": "idle"}, "text/plain", "send the body as"),
    ],
)
def test_bad_activations_are_400_and_record_nothing(
    client, db, secret, body, content_type, expected
):
    before = count_events(db)
    response = client.post(
        f"{BASE}/events",
        json=body,
        headers={**headers(secret), "Content-Type": content_type},
    )

    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["message"]
    assert any(expected in problem for problem in payload["errors"]), payload
    assert count_events(db) == before


def test_project_stream_is_newest_first_and_pages_with_links(client, db, secret):
    agent = rows.agent(db)
    for mode in ("idle", "active", "real_time"):
        client.post(
            f"{BASE}/events",
            json={"event": "agent_activate", "mode": mode},
            headers=headers(secret),
        )
    post_agent_event(client, secret, agent.id, {"event": "agent_heartbeat"})
    other = rows.agent(db, OTHER_PROJECT)
    post_agent_event(client, token(db, OTHER_PROJECT), other.id, {"event": "agent_heartbeat"})

    first = events_of(client, secret, "/events", limit=2)
    assert [e["event"] for e in first["events"]] == ["agent_heartbeat", "agent_activate"]
    assert first["events"][1]["mode"] == "real_time"
    last_id = first["events"][-1]["id"]
    assert first["links"] == [
        {
            "href": f"http://testserver.local{BASE}/events?limit=2&marker={last_id}",
            "rel": "next",
        }
    ]
    second = events_of(client, secret, "/events", limit=2, marker=last_id)
    assert [e["mode"] for e in second["events"]] == ["active", "idle"]
    assert [link["rel"] for link in second["links"]] == ["previous"]
    oldest_first = events_of(client, secret, "/events", sort_dir="asc")["events"]
    assert [e.get("mode") for e in oldest_first] == ["idle", "active", "real_time", None]


def test_event_lists_reject_bad_paging(client, db, secret):
    agent = rows.agent(db)
    for path in ("/events", f"/agents/{agent.id}/events"):
        for query in ({"marker": "abc"}, {"limit": "0"}, {"limit": "101"}, {"sort_dir": "up"}):
            response = client.get(f"{BASE}{path}", params=query, headers=headers(secret))
            assert response.status_code == 400, (path, query, response.text)
            assert response.json()["message"] == "Validation failed."


def test_observers_read_events_but_cannot_activate(client, db):
    observer = token(db, role="observer")
    response = client.post(
        f"{BASE}/events",
        json={"event": "agent_activate", "mode": "idle"},
        headers=headers(observer),
    )
    assert response.status_code == 403
    assert client.get(f"{BASE}/events", headers=headers(observer)).status_code == 200
    assert client.get(f"{BASE}/events").status_code == 401


# -- EV3 / EV4 ----------------------------------------------------------------------------------


def test_agent_posted_events_become_stream_events_of_the_agent(client, db, secret):
    agent = rows.agent(db)
    bodies = [
        {"event": "startup"},
        {"event": "agent_heartbeat"},
        {"event": "vault_db_download_in_progress", "request_id": "r-1"},
        {"event": "vault_db_download_completed", "request_id": "r-1"},
        {"event": "shutdown"},
    ]
    for body in bodies:
        response = post_agent_event(client, secret, agent.id, body)
        assert response.status_code == 202, response.text
        assert response.content == b""

    events = events_of(client, secret, f"/agents/{agent.id}/events")["events"]  # oldest first
    assert [e["event"] for e in events] == [
        "agent_startup",
        "agent_heartbeat",
        "vault_db_download_in_progress",
        "vault_db_download_completed",
        "agent_shutdown",
    ]
    assert all(e["agent"] == {"id": agent.id} for e in events)
    assert events[2]["request_id"] == "r-1"
    assert "request_id" not in events[1]
    assert len(events[4]["request_id"]) == 36  # agent_shutdown carries a fresh request id


def test_agent_activation_is_a_user_call_and_the_agent_sees_project_activations(client, db, secret):
    agent, neighbour = rows.agent(db), rows.agent(db)
    client.post(
        f"{BASE}/events", json={"event": "agent_activate", "mode": "idle"}, headers=headers(secret)
    )
    response = post_agent_event(
        client, secret, agent.id, {"event": "agent_activate", "mode": "real_time"}, False
    )
    assert response.status_code == 202, response.text
    post_agent_event(client, secret, neighbour.id, {"event": "agent_heartbeat"})

    events = events_of(client, secret, f"/agents/{agent.id}/events")["events"]
    assert [(e["event"], e["mode"]) for e in events] == [
        ("agent_activate", "idle"),
        ("agent_activate", "real_time"),
    ]
    assert all("agent" not in e for e in events)
    neighbour_events = events_of(client, secret, f"/agents/{neighbour.id}/events")["events"]
    assert [e["event"] for e in neighbour_events] == ["agent_activate", "agent_heartbeat"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"event": "reboot"}, "event must be one of"),
        ({"event": "startup", "mode": "idle"}, "mode is only allowed"),
        ({"event": "agent_heartbeat", "request_id": "x"}, "request_id is not allowed"),
        ({"event": "vault_db_download_failed"}, "request_id is required"),
        ({"event": "vault_db_download_failed", "request_id": ""}, "1 to 64 characters"),
        ({"event": "vault_db_download_failed", "request_id": "x" * 65}, "1 to 64 characters"),
        ({"event": "agent_activate"}, "mode is required"),
        ({"event": "agent_activate", "mode": "idle", "request_id": "x"}, "not allowed"),
        ({"event": "startup", "at": 1}, "unknown field"),
        ({}, "event is required."),
    ],
)
def test_bad_agent_events_are_400_and_record_nothing(client, db, secret, body, expected):
    agent = rows.agent(db)
    before = count_events(db)

    response = post_agent_event(client, secret, agent.id, body)

    assert response.status_code == 400, response.text
    assert any(expected in problem for problem in response.json()["errors"]), response.json()
    assert count_events(db) == before


def test_agent_events_need_the_agents_own_id_and_a_live_agent(client, db, secret):
    agent = rows.agent(db)
    before = count_events(db)

    missing = post_agent_event(client, secret, agent.id, {"event": "startup"}, False)
    assert missing.status_code == 400
    assert "X-Agent-Id" in missing.json()["errors"][0]
    other = post_agent_event(client, secret, agent.id, {"event": "startup"}, rows.agent(db).id)
    assert other.status_code == 403
    unknown = post_agent_event(client, secret, "no-such-agent", {"event": "startup"})
    assert unknown.status_code == 404
    foreign = rows.agent(db, OTHER_PROJECT)
    assert post_agent_event(client, secret, foreign.id, {"event": "startup"}).status_code == 404
    gone = rows.agent(db, deleted=True)
    assert post_agent_event(client, secret, gone.id, {"event": "startup"}).status_code == 404
    assert client.get(f"{BASE}/agents/{gone.id}/events", headers=headers(secret)).status_code == 404
    assert count_events(db) == before


def test_startup_publishes_the_agents_waiting_backups_again(client, db, secret, settings):
    agent = rows.agent(db)
    config = rows.configuration(db, agent)
    waiting = rows.backup(db, config.id, state="start_requested")
    rows.backup(db, config.id, state="completed")
    assert published_backups(settings) == []

    assert post_agent_event(client, secret, agent.id, {"event": "startup"}).status_code == 202

    assert published_backups(settings) == [waiting.id]


def published_backups(settings) -> list[str]:
    """Ids of the runs waiting in any queue of this test's broker namespace."""
    broker = redis.Redis.from_url(settings.broker_url)
    found = []
    for key in broker.scan_iter(f"{settings.backup_queue}*"):
        if broker.type(key) != b"list":
            continue
        for raw in broker.lrange(key, 0, -1):
            body = json.loads(base64.b64decode(json.loads(raw)["body"]))
            found.append(body[0][0])
    return found


# -- EV8 ----------------------------------------------------------------------------------------


def test_configuration_events_are_its_backups_events_newest_first(client, db, secret):
    agent = rows.agent(db)
    config, other = rows.configuration(db, agent), rows.configuration(db, agent)
    assert start_backup(client, secret, config.id).status_code == 201
    assert start_backup(client, secret, other.id).status_code == 201
    backup_id = client.get(
        f"{BASE}/backups", params={"configuration_id": config.id}, headers=headers(secret)
    ).json()["backups"][0]["id"]
    patch = client.patch(
        f"{BASE}/backups/{backup_id}",
        json=[{"op": "replace", "path": "/state", "value": "stop_requested"}],
        headers=headers(secret, **{"Content-Type": "application/json-patch+json"}),
    )
    assert patch.status_code == 204, patch.text
    post_agent_event(client, secret, agent.id, {"event": "agent_heartbeat"})

    events = events_of(client, secret, f"/configurations/{config.id}/events")["events"]

    assert [e["event"] for e in events] == [
        "backup_stopped",
        "backup_stop_request",
        "backup_start_request",
    ]
    assert all(e["configuration"] == {"id": config.id} for e in events)
    assert events_of(client, secret, f"/configurations/{config.id}/events", sort_dir="asc")[
        "events"
    ] == list(reversed(events))


def test_configuration_events_of_unknown_or_foreign_configurations_are_404(client, db, secret):
    foreign = rows.configuration(db, rows.agent(db, OTHER_PROJECT))
    for configuration_id in ("nope", foreign.id):
        response = client.get(
            f"{BASE}/configurations/{configuration_id}/events", headers=headers(secret)
        )
        assert response.status_code == 404
        assert response.json() == {"message": "Configuration not found."}
    deleted = rows.configuration(db, rows.agent(db), deleted=True)
    assert events_of(client, secret, f"/configurations/{deleted.id}/events")["events"] == []


# -- retention ----------------------------------------------------------------------------------


def test_purge_deletes_only_events_older_than_the_retention(client, db, secret):
    agent = rows.agent(db)
    for _ in range(3):
        post_agent_event(client, secret, agent.id, {"event": "agent_heartbeat"})
    with db.transaction() as session:
        ids = sorted(session.execute(sa.select(EVENTS.c.id)).scalars())
        session.execute(
            sa.update(EVENTS)
            .where(EVENTS.c.id.in_(ids[:2]))
            .values(time=utcnow() - timedelta(hours=25))
        )

    assert purge_expired_events(db, timedelta(hours=24)) == 2
    assert purge_expired_events(db, timedelta(hours=24)) == 0
    remaining = events_of(client, secret, f"/agents/{agent.id}/events")["events"]
    assert [int(e["id"]) for e in remaining] == ids[2:]
    # A marker that was purged still works: it is a position in the id sequence.
    page = events_of(client, secret, f"/agents/{agent.id}/events", marker=str(ids[0]))
    assert [int(e["id"]) for e in page["events"]] == ids[2:]


def test_purge_works_through_more_than_one_batch(db):
    from cloudbackup.domain.events import record_event

    old = utcnow() - timedelta(days=2)
    with db.transaction() as session:
        for _ in range(7):
            record_event(session, "agent_heartbeat", project_id=PROJECT)
        session.execute(sa.update(EVENTS).values(time=old))
        record_event(session, "agent_heartbeat", project_id=PROJECT)

    assert purge_expired_events(db, timedelta(hours=1), batch=3) == 7
    assert count_events(db) == 1


def test_startup_announced_in_a_loop_republishes_each_run_once(client, db, secret, settings):
    agent = rows.agent(db)
    config = rows.configuration(db, agent)
    waiting = rows.backup(db, config.id, state="start_requested")
    for _ in range(5):
        assert post_agent_event(client, secret, agent.id, {"event": "startup"}).status_code == 202
    assert published_backups(settings) == [waiting.id]  # not five times
