"""C1-C4, ER3, EV7 through the HTTP API on SQLite, publishing to a TCP fakeredis broker."""

from __future__ import annotations

import json

import pytest
import redis

from cloudbackup.queue.names import QueueNames
from factories import rows
from factories.api import OTHER_PROJECT, PROJECT, agent_token, headers, token

BASE = "http://testserver.local/v2/110011"
PATCH = {"Content-Type": "application/json-patch+json"}
FINAL_MESSAGE = (
    "Modifying a cleanup that is already in a state of "
    "['completed', 'completed_with_errors', 'failed', 'stopped'] is not allowed."
)


def published(settings) -> list[tuple[str, str]]:
    """(task, args) of the messages waiting in the maintenance queue, where cleanups go."""
    queue = QueueNames(settings.backup_queue).maintenance
    raw = redis.Redis.from_url(settings.broker_url).lrange(queue, 0, -1)
    return [(m["headers"]["task"], m["headers"]["argsrepr"]) for m in map(json.loads, raw)]


def start(client, secret, agent_id, state="start_requested", project_id=PROJECT, **extra):
    return client.post(
        f"/v2/{project_id}/cleanups",
        json={"agent_id": agent_id, "state": state},
        headers=headers(secret, **extra),
    )


def patch(client, secret, cleanup_id, ops, **extra):
    return client.patch(
        f"/v2/{PROJECT}/cleanups/{cleanup_id}",
        content=json.dumps(ops).encode(),
        headers={"X-Auth-Token": secret, **PATCH, **extra},
    )


def state_op(value: str) -> list[dict]:
    return [{"op": "replace", "path": "/state", "value": value}]


def count(client, secret) -> int:
    return len(client.get(f"/v2/{PROJECT}/cleanups", headers=headers(secret)).json()["cleanups"])


def events(client, secret, cleanup_id) -> list[dict]:
    response = client.get(f"/v2/{PROJECT}/cleanups/{cleanup_id}/events", headers=headers(secret))
    assert response.status_code == 200, response.text
    return response.json()["events"]


@pytest.fixture
def setup(client, db):
    return rows.agent(db), token(db)


def test_start_cleanup_returns_the_spec_body_then_publishes(client, setup, settings):
    agent, secret = setup
    response = start(client, secret, agent.id)
    assert response.status_code == 201, response.text
    body = response.json()
    cid = body["id"]
    assert response.headers["location"] == f"{BASE}/cleanups/{cid}"
    assert list(body) == [
        "project_id",
        "id",
        "agent",
        "state",
        "started_time",
        "ended_time",
        "snapshot_ids",
        "errors",
        "bytes_before",
        "bytes_after",
        "links",
    ]
    assert body == {
        "project_id": "110011",
        "id": cid,
        "agent": {"id": agent.id, "links": [{"href": f"{BASE}/agents/{agent.id}", "rel": "full"}]},
        "state": "start_requested",
        "started_time": None,
        "ended_time": None,
        "snapshot_ids": [],
        "errors": {
            "count": 0,
            "reason": "",
            "diagnostics": "",
            "links": [{"href": f"{BASE}/cleanups/{cid}/errors", "rel": "full"}],
        },
        "bytes_before": 0,
        "bytes_after": 0,
        "links": [
            {"href": f"{BASE}/cleanups/{cid}", "rel": "self"},
            {"href": f"{BASE}/cleanups/{cid}/events", "rel": "events"},
        ],
    }
    assert client.get(response.headers["location"], headers=headers(secret)).json() == body
    assert published(settings) == [("cloudbackup.run_cleanup", repr([cid]))]
    [event] = events(client, secret, cid)
    assert event["event"] == "cleanup_start_request" and event["id"].isdigit()
    assert event["agent"] == {"id": agent.id, "vault": {"id": agent.vault_id, "encrypted": False}}
    assert event["cleanup"] == {"id": cid} and event["request_id"]


def test_start_scheduled_needs_the_agents_own_header(client, setup, db):
    agent, secret = setup
    missing = start(client, secret, agent.id, "start_scheduled")
    assert missing.status_code == 400 and "X-Agent-Id" in missing.json()["errors"][0]
    other = rows.agent(db)
    wrong = start(client, secret, agent.id, "start_scheduled", **{"X-Agent-Id": other.id})
    assert wrong.status_code == 403
    right = start(client, secret, agent.id, "start_scheduled", **{"X-Agent-Id": agent.id})
    assert right.status_code == 201 and right.json()["state"] == "start_scheduled"
    disabled = rows.agent(db, enabled=False)
    scheduled = start(client, secret, disabled.id, "start_scheduled", **{"X-Agent-Id": disabled.id})
    assert scheduled.status_code == 409
    assert start(client, secret, disabled.id).status_code == 201  # a user may still ask


def test_one_active_cleanup_per_vault(client, setup, settings):
    agent, secret = setup
    first = start(client, secret, agent.id).json()
    second = start(client, secret, agent.id)
    assert second.status_code == 409 and "already in progress" in second.json()["message"]
    assert count(client, secret) == 1 and len(published(settings)) == 1
    assert patch(client, secret, first["id"], state_op("stop_requested")).status_code == 204
    assert start(client, secret, agent.id).status_code == 201  # free again once final


@pytest.mark.parametrize(
    ("raw", "content_type", "message"),
    [
        (b'{"agent_id": ', "application/json", "Malformed JSON."),
        (b"[]", "application/json", "Validation failed."),
        (b'{"state": "start_requested"}', "application/json", "Validation failed."),
        (b'{"agent_id": "A"}', "application/json", "Validation failed."),
        (b'{"agent_id": "A", "state": "queued"}', "application/json", "Validation failed."),
        (b'{"agent_id": "A", "state": "start_requested", "x": 1}', "application/json", None),
        (b'{"agent_id": 5, "state": "start_requested"}', "application/json", None),
        (
            b'{"agent_id": "A", "state": "start_requested"}',
            "text/plain",
            "Content-Type must be application/json.",
        ),
    ],
)
def test_bad_bodies_are_400_and_record_nothing(client, setup, settings, raw, content_type, message):
    agent, secret = setup
    response = client.post(
        f"/v2/{PROJECT}/cleanups",
        content=raw.replace(b'"A"', json.dumps(agent.id).encode()),
        headers={"X-Auth-Token": secret, "Content-Type": content_type},
    )
    assert response.status_code == 400, response.text
    assert response.json()["message"] == (message or "Validation failed.")
    assert count(client, secret) == 0 and published(settings) == []


def test_unknown_foreign_or_deleted_agent_is_404(client, setup, db):
    _, secret = setup
    for agent_id in (
        "8f135b4f-7a69-4b8a-947f-5e80d772fd97",
        rows.agent(db, project_id=OTHER_PROJECT).id,
        rows.agent(db, deleted=True).id,
    ):
        response = start(client, secret, agent_id)
        assert response.status_code == 404 and response.json() == {"message": "Agent not found."}
    assert count(client, secret) == 0


def test_authentication_roles_and_methods(client, setup, db):
    agent, secret = setup
    assert start(client, "", agent.id).status_code == 401
    assert start(client, "0f6e9f63600142f0a970911583522217", agent.id).status_code == 401
    observer = token(db, role="observer")
    assert start(client, observer, agent.id).status_code == 403
    cid = start(client, token(db, role="creator"), agent.id).json()["id"]
    assert client.get(f"/v2/{PROJECT}/cleanups/{cid}", headers=headers(observer)).status_code == 200
    assert patch(client, observer, cid, state_op("stop_requested")).status_code == 403
    for method, path in (
        ("PUT", "/cleanups"),
        ("DELETE", f"/cleanups/{cid}"),
        ("POST", f"/cleanups/{cid}/errors"),
    ):
        response = client.request(method, f"/v2/{PROJECT}{path}", headers=headers(secret))
        assert response.status_code == 405 and response.json()["message"]


def test_unknown_cleanup_is_404_everywhere(client, setup):
    _, secret = setup
    unknown = "2f8708b3-d16b-11e4-bc22-c8e0eb190e3d"
    for suffix in ("", "/errors", "/events"):
        response = client.get(f"/v2/{PROJECT}/cleanups/{unknown}{suffix}", headers=headers(secret))
        assert response.status_code == 404 and response.json() == {"message": "Cleanup not found."}
    assert patch(client, secret, unknown, state_op("stop_requested")).status_code == 404


def test_list_cleanups_pages_newest_first(client, setup, db):
    _, secret = setup
    ids = [start(client, secret, rows.agent(db).id).json()["id"] for _ in range(4)]
    first = client.get(f"/v2/{PROJECT}/cleanups?limit=3", headers=headers(secret)).json()
    assert [c["id"] for c in first["cleanups"]] == ids[::-1][:3]
    assert first["links"] == [{"href": f"{BASE}/cleanups?limit=3&marker={ids[1]}", "rel": "next"}]
    assert first["cleanups"][0]["links"][0]["rel"] == "self"
    rest = client.get(first["links"][0]["href"], headers=headers(secret)).json()
    assert [c["id"] for c in rest["cleanups"]] == [ids[0]]
    assert rest["links"] == [
        {"href": f"{BASE}/cleanups?limit=3&marker={ids[0]}&sort_dir=asc", "rel": "previous"}
    ]
    for query in ("limit=0", "sort_dir=x", "marker=nope"):
        assert (
            client.get(f"/v2/{PROJECT}/cleanups?{query}", headers=headers(secret)).status_code
            == 400
        )


def test_agent_reports_progress_and_final_result(client, setup, db):
    agent, secret = setup
    agent_secret = agent_token(db, agent.id)
    cid = start(client, secret, agent.id).json()["id"]
    as_agent = {"X-Agent-Id": agent.id}
    assert patch(client, secret, cid, state_op("queued")).status_code == 403
    assert (
        patch(
            client, secret, cid, state_op("queued"), **{"X-Agent-Id": rows.agent(db).id}
        ).status_code
        == 403
    )
    assert patch(client, agent_secret, cid, state_op("preparing"), **as_agent).status_code == 400
    assert patch(client, agent_secret, cid, state_op("in_progress"), **as_agent).status_code == 409
    for state in ("queued", "in_progress"):
        assert patch(client, agent_secret, cid, state_op(state), **as_agent).status_code == 204
    report = [
        {"op": "replace", "path": "/state", "value": "completed_with_errors"},
        {"op": "add", "path": "/started_time", "value": "2014-08-05T18:22:22.238641Z"},
        {"op": "add", "path": "/ended_time", "value": "2014-08-05T18:23:50.489715Z"},
        {"op": "replace", "path": "/snapshot_ids", "value": [23, 51]},
        {"op": "replace", "path": "/bytes_before", "value": 1073741824},
        {"op": "replace", "path": "/bytes_after", "value": 1067030938},
        {
            "op": "replace",
            "path": "/errors",
            "value": {
                "count": 1,
                "reason": "error_deleting_object",
                "diagnostics": None,
                "list": [
                    {
                        "index": 34,
                        "path": "/var/www/html/log/st_808_playlist.txt",
                        "type": "file_missing_blocks",
                        "exception": None,
                    }
                ],
            },
        },
    ]
    assert patch(client, agent_secret, cid, report, **as_agent).status_code == 204
    body = client.get(f"/v2/{PROJECT}/cleanups/{cid}", headers=headers(secret)).json()
    assert body["state"] == "completed_with_errors"
    assert body["snapshot_ids"] == [23, 51]
    assert (body["bytes_before"], body["bytes_after"]) == (1073741824, 1067030938)
    assert body["errors"] == {
        "count": 1,
        "reason": "error_deleting_object",
        "diagnostics": None,
        "links": [{"href": f"{BASE}/cleanups/{cid}/errors", "rel": "full"}],
    }
    errors = client.get(f"/v2/{PROJECT}/cleanups/{cid}/errors", headers=headers(secret)).json()
    assert errors == {
        "count": 1,
        "reason": "error_deleting_object",
        "diagnostics": None,
        "list": [
            {
                "index": 34,
                "path": "/var/www/html/log/st_808_playlist.txt",
                "type": "file_missing_blocks",
                "description": (
                    "A vault validation determined that the specified file is missing blocks."
                ),
                "exception": None,
            }
        ],
        "links": [{"href": f"{BASE}/cleanups/{cid}/errors", "rel": "self"}],
    }
    assert [e["event"] for e in events(client, secret, cid)] == [
        "cleanup_start_request",
        "cleanup_queued",
        "cleanup_in_progress",
        "cleanup_completed",
    ]
    final = patch(client, secret, cid, state_op("stop_requested"))
    assert final.status_code == 409 and final.json() == {"message": FINAL_MESSAGE}


def test_errors_of_a_fresh_cleanup_have_null_diagnostics(client, setup):
    agent, secret = setup
    cid = start(client, secret, agent.id).json()["id"]
    body = client.get(f"/v2/{PROJECT}/cleanups/{cid}/errors", headers=headers(secret)).json()
    assert body == {
        "count": 0,
        "reason": "",
        "diagnostics": None,
        "list": [],
        "links": [{"href": f"{BASE}/cleanups/{cid}/errors", "rel": "self"}],
    }


@pytest.mark.parametrize(
    "ops",
    [
        [],
        [{"op": "remove", "path": "/state"}],
        [{"op": "replace", "path": "/agent", "value": "x"}],
        [{"op": "replace", "path": "/state", "value": "start_scheduled"}],
        [{"op": "replace", "path": "/state", "value": "skipped"}],
        [{"op": "replace", "path": "/snapshot_ids", "value": ["23"]}],
        [{"op": "replace", "path": "/snapshot_ids", "value": [0]}],
        [{"op": "replace", "path": "/bytes_after", "value": -5}],
        [
            {
                "op": "replace",
                "path": "/errors",
                "value": {"count": 0, "reason": "", "diagnostics": "x"},
            }
        ],
        [
            {
                "op": "replace",
                "path": "/errors",
                "value": {
                    "count": 1,
                    "reason": "r",
                    "diagnostics": None,
                    "list": [{"index": 0, "path": "/a", "type": "t", "exception": {"code": 1}}],
                },
            }
        ],
    ],
)
def test_bad_patches_are_400_and_change_nothing(client, setup, ops):
    agent, secret = setup
    cid = start(client, secret, agent.id).json()["id"]
    response = patch(client, secret, cid, ops, **{"X-Agent-Id": agent.id})
    assert response.status_code == 400, response.text
    body = client.get(f"/v2/{PROJECT}/cleanups/{cid}", headers=headers(secret)).json()
    assert body["state"] == "start_requested" and body["snapshot_ids"] == []


def test_stop_before_pickup_goes_straight_to_stopped(client, setup):
    agent, secret = setup
    cid = start(client, secret, agent.id).json()["id"]
    assert patch(client, secret, cid, state_op("stop_requested")).status_code == 204
    body = client.get(f"/v2/{PROJECT}/cleanups/{cid}", headers=headers(secret)).json()
    assert body["state"] == "stopped" and body["ended_time"] is not None
    listed = events(client, secret, cid)
    assert [e["event"] for e in listed] == [
        "cleanup_start_request",
        "cleanup_stop_request",
        "cleanup_stopped",
    ]
    assert listed[1]["request_id"] and listed[1]["agent"] == {"id": agent.id}
    assert "request_id" not in listed[2]
    page = client.get(
        f"/v2/{PROJECT}/cleanups/{cid}/events?limit=1&marker={listed[0]['id']}",
        headers=headers(secret),
    ).json()
    assert [e["event"] for e in page["events"]] == ["cleanup_stop_request"]
    assert {link["rel"] for link in page["links"]} == {"next", "previous"}
