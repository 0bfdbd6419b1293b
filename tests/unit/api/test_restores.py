"""R1-R4, ER2, EV6 through the HTTP API on SQLite, publishing to a TCP fakeredis broker."""

from __future__ import annotations

import json

import pytest
import redis

from factories import rows
from factories.api import OTHER_PROJECT, PROJECT, agent_token, headers, token

BASE = "http://testserver.local/v2/110011"
PATCH = {"Content-Type": "application/json-patch+json"}
FINAL_MESSAGE = (
    "Modifying a restore that is already in a state of "
    "['completed', 'completed_with_errors', 'failed', 'stopped'] is not allowed."
)


def published(settings, queue: str | None = None) -> list[tuple[str, str]]:
    """(task name, args) of every message waiting in ``queue`` (default: the manual lane)."""
    raw = redis.Redis.from_url(settings.broker_url).lrange(queue or settings.backup_queue, 0, -1)
    return [(m["headers"]["task"], m["headers"]["argsrepr"]) for m in (json.loads(r) for r in raw)]


def restore_body(backup_id: str, agent_id: str, **overrides) -> dict:
    body = {
        "backup_id": backup_id,
        "destination_agent_id": agent_id,
        "destination_path": "/restore/here",
        "overwrite_files": False,
        "encrypted_password_hex": None,
        "inclusions": [{"type": "folder", "path": "/web/"}],
        "exclusions": [{"type": "file", "path": "/web/cache.jpg"}],
    }
    body.update(overrides)
    return body


def start(client, secret, body, project_id: str = PROJECT):
    return client.post(f"/v2/{project_id}/restores", json=body, headers=headers(secret))


def patch(client, secret, restore_id, ops, **extra):
    return client.patch(
        f"/v2/{PROJECT}/restores/{restore_id}",
        content=json.dumps(ops).encode(),
        headers={"X-Auth-Token": secret, **PATCH, **extra},
    )


def state_op(value: str) -> list[dict]:
    return [{"op": "replace", "path": "/state", "value": value}]


@pytest.fixture
def setup(client, db):
    """A restorable backup of one agent, another agent (the destination) and an admin token."""
    source = rows.agent(db)
    config = rows.configuration(db, source)
    backup = rows.backup(db, config.id, restorable=True, snapshot_id=1111)
    destination = rows.agent(db, id="74124b09-5bd3-4436-b3e4-87ef362e4df5")
    return source, config, backup, destination, token(db)


def count_restores(client, secret) -> int:
    return len(client.get(f"/v2/{PROJECT}/restores", headers=headers(secret)).json()["restores"])


def events(client, secret, restore_id) -> list[dict]:
    response = client.get(f"/v2/{PROJECT}/restores/{restore_id}/events", headers=headers(secret))
    assert response.status_code == 200, response.text
    return response.json()["events"]


def test_start_restore_returns_the_spec_body_then_publishes(client, setup, settings):
    source, config, backup, destination, secret = setup
    response = start(client, secret, restore_body(backup.id, destination.id))

    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    rid = body["id"]
    assert response.headers["location"] == f"{BASE}/restores/{rid}"
    assert list(body) == [
        "project_id",
        "id",
        "backup",
        "destination_agent",
        "destination_path",
        "overwrite_files",
        "inclusions",
        "exclusions",
        "state",
        "started_time",
        "ended_time",
        "errors",
        "files_restored",
        "bytes_restored",
        "links",
    ]
    assert body == {
        "project_id": "110011",
        "id": rid,
        "backup": {
            "id": backup.id,
            "links": [{"href": f"{BASE}/backups/{backup.id}", "rel": "full"}],
        },
        "destination_agent": {
            "id": destination.id,
            "links": [{"href": f"{BASE}/agents/{destination.id}", "rel": "full"}],
        },
        "destination_path": "/restore/here",
        "overwrite_files": False,
        "inclusions": [{"type": "folder", "path": "/web/"}],
        "exclusions": [{"type": "file", "path": "/web/cache.jpg"}],
        "state": "start_requested",
        "started_time": None,
        "ended_time": None,
        "errors": {
            "count": 0,
            "reason": "",
            "diagnostics": "",
            "links": [{"href": f"{BASE}/restores/{rid}/errors", "rel": "full"}],
        },
        "files_restored": 0,
        "bytes_restored": 0,
        "links": [
            {"href": f"{BASE}/restores/{rid}", "rel": "self"},
            {"href": f"{BASE}/restores/{rid}/events", "rel": "events"},
        ],
    }
    assert client.get(response.headers["location"], headers=headers(secret)).json() == body
    # Committed, then published once, to the destination agent's (here: the shared) queue.
    assert published(settings) == [("cloudbackup.run_restore", repr([rid]))]
    [event] = events(client, secret, rid)
    assert event["event"] == "restore_start_request"
    assert {k: v for k, v in event.items() if k not in ("id", "time", "request_id")} == {
        "event": "restore_start_request",
        "agent": {"id": destination.id},
        "source_agent": {"vault": {"id": source.vault_id, "encrypted": False}},
        "configuration": {"id": config.id},
        "backup": {"snapshot_id": 1111},
        "restore": {
            "id": rid,
            "destination_path": "/restore/here",
            "overwrite_files": False,
            "inclusions": [{"type": "folder", "path": "/web/"}],
            "exclusions": [{"type": "file", "path": "/web/cache.jpg"}],
        },
    }
    assert event["id"].isdigit() and event["request_id"]
    # EV8: the restore's events belong to the backup's configuration too.
    ev8 = client.get(f"/v2/{PROJECT}/configurations/{config.id}/events", headers=headers(secret))
    assert rid in [e.get("restore", {}).get("id") for e in ev8.json()["events"]]


def test_overwrite_files_defaults_to_false_and_empty_inclusions_mean_everything(client, setup):
    _, _, backup, destination, secret = setup
    body = restore_body(backup.id, destination.id, inclusions=[], exclusions=[])
    del body["overwrite_files"]
    response = start(client, secret, body)
    assert response.status_code == 201, response.text
    assert response.json()["overwrite_files"] is False
    assert response.json()["inclusions"] == []


@pytest.mark.parametrize(
    ("change", "message", "error"),
    [
        ({"backup_id": None}, "Validation failed.", None),
        ({"destination_agent_ID": "x"}, "Validation failed.", None),  # OQ-7: lower case only
        ({"overwrite_files": "yes"}, "Validation failed.", None),
        ({"inclusions": {"type": "folder", "path": "/web/"}}, "Validation failed.", None),
        ({"inclusions": [{"type": "dir", "path": "/web/"}]}, "Validation failed.", None),
        ({"inclusions": [{"type": "folder"}]}, "Validation failed.", None),
        ({"destination_path": "relative/path"}, "Validation failed.", "must be absolute"),
        ({"destination_path": "/a/../etc"}, "Validation failed.", "'..' component"),
        ({"destination_path": "/a\nb"}, "Validation failed.", "control character"),
        (
            {"inclusions": [{"type": "file", "path": "/web/"}]},
            "Validation failed.",
            "must not end with '/'",
        ),
        (
            {"inclusions": [{"type": "folder", "path": "/a/"}, {"type": "folder", "path": "/a"}]},
            "Validation failed.",
            "listed more than once",
        ),
        (
            {"inclusions": [{"type": "folder", "path": "/a/"}, {"type": "file", "path": "/a/b"}]},
            "Validation failed.",
            "lies inside inclusion",
        ),
        (
            {
                "inclusions": [{"type": "folder", "path": "/a/b/"}],
                "exclusions": [{"type": "folder", "path": "/a/"}],
            },
            "Validation failed.",
            "lies inside exclusion",
        ),
        ({"encrypted_password_hex": "not hex"}, "Validation failed.", "hexadecimal"),
        ({"encrypted_password_hex": 12}, "Validation failed.", None),
    ],
)
def test_bad_bodies_are_400_and_record_nothing(client, setup, settings, change, message, error):
    _, _, backup, destination, secret = setup
    body = {**restore_body(backup.id, destination.id), **change}
    response = start(client, secret, body)
    assert response.status_code == 400, response.text
    assert response.json()["message"] == message
    if error:
        assert any(error in text for text in response.json()["errors"]), response.json()
    assert count_restores(client, secret) == 0
    assert published(settings) == []


def test_every_missing_key_is_named_and_malformed_input_is_400(client, setup):
    _, _, backup, destination, secret = setup
    for key in (
        "backup_id",
        "destination_agent_id",
        "destination_path",
        "encrypted_password_hex",
        "inclusions",
        "exclusions",
    ):
        body = restore_body(backup.id, destination.id)
        del body[key]
        response = start(client, secret, body)
        assert response.status_code == 400
        assert response.json() == {
            "message": "Validation failed.",
            "errors": [f"{key} is required."],
        }
    for raw, content_type, message in (
        (b'{"backup_id": ', "application/json", "Malformed JSON."),
        (b"[]", "application/json", "Validation failed."),
        (b"{}", "text/plain", "Content-Type must be application/json."),
    ):
        response = client.post(
            f"/v2/{PROJECT}/restores",
            content=raw,
            headers={"X-Auth-Token": secret, "Content-Type": content_type},
        )
        assert response.status_code == 400
        assert response.json()["message"] == message
    assert count_restores(client, secret) == 0


def test_unknown_or_foreign_backup_and_agent_are_404(client, setup, db):
    _, _, backup, destination, secret = setup
    foreign_agent = rows.agent(db, project_id=OTHER_PROJECT)
    foreign_backup = rows.backup(
        db, rows.configuration(db, foreign_agent).id, restorable=True, snapshot_id=1
    )
    deleted = rows.agent(db, deleted=True)
    cases = [
        (restore_body("0d95d699-d16b-11e4-93bd-c8e0eb190e3d", destination.id), "Backup not found."),
        (restore_body(foreign_backup.id, destination.id), "Backup not found."),
        (restore_body(backup.id, "8f135b4f-7a69-4b8a-947f-5e80d772fd97"), "Agent not found."),
        (restore_body(backup.id, foreign_agent.id), "Agent not found."),
        (restore_body(backup.id, deleted.id), "Agent not found."),
        (restore_body("a\u0000b", destination.id), None),
    ]
    for body, message in cases:
        response = start(client, secret, body)
        if message is None:
            assert response.status_code == 400  # NUL never reaches the database
            continue
        assert response.status_code == 404, body
        assert response.json() == {"message": message}
    assert count_restores(client, secret) == 0
    assert (
        start(client, secret, restore_body(backup.id, destination.id), OTHER_PROJECT).status_code
        == 404
    )


def test_a_backup_that_is_not_restorable_is_409(client, setup, db):
    _, config, _, destination, secret = setup
    running = rows.backup(db, config.id, state="in_progress")
    expired = rows.backup(db, config.id, restorable=False, snapshot_id=7)
    for backup in (running, expired):
        response = start(client, secret, restore_body(backup.id, destination.id))
        assert response.status_code == 409
        assert "not restorable" in response.json()["message"]
    assert count_restores(client, secret) == 0


def test_null_destination_path_only_onto_the_backups_host(client, setup, db):
    source, _, backup, destination, secret = setup
    other_host = start(
        client, secret, restore_body(backup.id, destination.id, destination_path=None)
    )
    assert other_host.status_code == 400
    assert "original locations" in other_host.json()["errors"][0]
    same_agent = start(client, secret, restore_body(backup.id, source.id, destination_path=None))
    assert same_agent.status_code == 201 and same_agent.json()["destination_path"] is None
    twin = rows.agent(db, host_machine_id=source.host_machine_id)
    same_host = start(client, secret, restore_body(backup.id, twin.id, destination_path=None))
    assert same_host.status_code == 201


def test_authentication_roles_and_methods(client, setup, db):
    _, _, backup, destination, secret = setup
    body = restore_body(backup.id, destination.id)
    assert start(client, "", body).status_code == 401
    assert start(client, "0f6e9f63600142f0a970911583522217", body).status_code == 401
    observer = token(db, role="observer")
    refused = start(client, observer, body)
    assert refused.status_code == 403 and refused.json()["message"]
    creator = token(db, role="creator")
    created = start(client, creator, body)
    assert created.status_code == 201
    rid = created.json()["id"]
    assert client.get(f"/v2/{PROJECT}/restores", headers=headers(observer)).status_code == 200
    assert client.get(f"/v2/{PROJECT}/restores/{rid}", headers=headers(observer)).status_code == 200
    assert patch(client, observer, rid, state_op("stop_requested")).status_code == 403
    for method, path in (
        ("put", "/restores"),
        ("delete", f"/restores/{rid}"),
        ("post", f"/restores/{rid}"),
        ("put", f"/restores/{rid}/errors"),
        ("post", f"/restores/{rid}/events"),
    ):
        response = client.request(method.upper(), f"/v2/{PROJECT}{path}", headers=headers(secret))
        assert response.status_code == 405, (method, path)
        assert response.json()["message"]


def test_unknown_restore_is_404_everywhere(client, db):
    secret = token(db)
    unknown = "e87e6f7d-d166-11e4-8689-c8e0eb190e3d"
    for suffix in ("", "/errors", "/events"):
        response = client.get(f"/v2/{PROJECT}/restores/{unknown}{suffix}", headers=headers(secret))
        assert response.status_code == 404
        assert response.json() == {"message": "Restore not found."}
    assert patch(client, secret, unknown, state_op("stop_requested")).status_code == 404
    assert client.get(f"/v2/{PROJECT}/restores/a%00b", headers=headers(secret)).status_code == 404


def test_list_restores_pages_newest_first_with_links(client, setup):
    _, _, backup, destination, secret = setup
    ids = [
        start(client, secret, restore_body(backup.id, destination.id)).json()["id"]
        for _ in range(5)
    ]
    first = client.get(f"/v2/{PROJECT}/restores?limit=2", headers=headers(secret)).json()
    assert [r["id"] for r in first["restores"]] == ids[::-1][:2]
    assert first["links"] == [{"href": f"{BASE}/restores?limit=2&marker={ids[3]}", "rel": "next"}]
    item = first["restores"][0]
    # OQ-21: list items leave out inclusions/exclusions and name their own link `full`.
    assert "inclusions" not in item and "exclusions" not in item
    assert item["links"] == [
        {"href": f"{BASE}/restores/{item['id']}", "rel": "full"},
        {"href": f"{BASE}/restores/{item['id']}/events", "rel": "events"},
    ]
    second = client.get(first["links"][0]["href"], headers=headers(secret)).json()
    assert [r["id"] for r in second["restores"]] == [ids[2], ids[1]]
    previous = next(link for link in second["links"] if link["rel"] == "previous")
    assert previous["href"] == f"{BASE}/restores?limit=2&marker={ids[2]}&sort_dir=asc"
    ascending = client.get(f"/v2/{PROJECT}/restores?sort_dir=asc", headers=headers(secret)).json()
    assert [r["id"] for r in ascending["restores"]] == ids and ascending["links"] == []
    for query in ("limit=0", "limit=101", "limit=x", "sort_dir=up", "marker=nope"):
        response = client.get(f"/v2/{PROJECT}/restores?{query}", headers=headers(secret))
        assert response.status_code == 400, query
        assert response.json()["message"] == "Validation failed."


def test_errors_of_a_fresh_restore_are_empty(client, setup):
    _, _, backup, destination, secret = setup
    rid = start(client, secret, restore_body(backup.id, destination.id)).json()["id"]
    body = client.get(f"/v2/{PROJECT}/restores/{rid}/errors", headers=headers(secret)).json()
    assert body == {
        "count": 0,
        "reason": "",
        "diagnostics": "",
        "list": [],
        "links": [{"href": f"{BASE}/restores/{rid}/errors", "rel": "self"}],
    }


def test_agent_reports_progress_and_final_result(client, setup, db):
    source, _, backup, destination, secret = setup
    agent_secret = agent_token(db, destination.id)
    rid = start(client, secret, restore_body(backup.id, destination.id)).json()["id"]
    as_agent = {"X-Agent-Id": destination.id}
    # Progress needs the destination agent's X-Agent-Id (OQ-39): not a user, not the source.
    assert patch(client, secret, rid, state_op("queued")).status_code == 403
    assert (
        patch(client, secret, rid, state_op("queued"), **{"X-Agent-Id": source.id}).status_code
        == 403
    )
    assert patch(client, agent_secret, rid, state_op("completed"), **as_agent).status_code == 409
    for state in ("queued", "preparing", "in_progress"):
        assert patch(client, agent_secret, rid, state_op(state), **as_agent).status_code == 204
    backwards = patch(client, agent_secret, rid, state_op("queued"), **as_agent)
    assert backwards.status_code == 409
    assert (
        backwards.json()["message"] == "A restore in state 'in_progress' cannot move to 'queued'."
    )
    counters = [{"op": "add", "path": "/files_restored", "value": 1}]
    assert patch(client, agent_secret, rid, counters, **as_agent).status_code == 204
    report = [
        {"op": "replace", "path": "/state", "value": "completed_with_errors"},
        {"op": "add", "path": "/started_time", "value": "2014-08-05T18:22:22.238641Z"},
        {"op": "replace", "path": "/ended_time", "value": "2014-08-05T18:23:50.489715Z"},
        {"op": "replace", "path": "/files_restored", "value": 2},
        {"op": "replace", "path": "/bytes_restored", "value": 1512},
        {
            "op": "replace",
            "path": "/errors",
            "value": {
                "count": 1,
                "reason": "unable_to_process_some_files",
                "diagnostics": "Some files may not have been restored.",
                "list": [
                    {
                        "index": 3,
                        "path": "/usr/bin/h2xs",
                        "type": "phx_exception",
                        "exception": {"code": 9016, "description": "denied", "details": "trace"},
                    }
                ],
            },
        },
    ]
    assert patch(client, agent_secret, rid, report, **as_agent).status_code == 204
    body = client.get(f"/v2/{PROJECT}/restores/{rid}", headers=headers(secret)).json()
    assert (body["state"], body["files_restored"], body["bytes_restored"]) == (
        "completed_with_errors",
        2,
        1512,
    )
    assert body["started_time"] == "2014-08-05T18:22:22.238641Z"
    assert body["ended_time"] == "2014-08-05T18:23:50.489715Z"
    assert body["errors"]["count"] == 1
    assert body["errors"]["diagnostics"] == "Some files may not have been restored."
    errors = client.get(f"/v2/{PROJECT}/restores/{rid}/errors", headers=headers(secret)).json()
    assert errors["list"] == [
        {
            "index": 3,
            "path": "/usr/bin/h2xs",
            "type": "phx_exception",
            "description": "The agent experience a problem (Phoenix).",
            "exception": {"code": 9016, "description": "denied", "details": "trace"},
        }
    ]
    assert [e["event"] for e in events(client, secret, rid)] == [
        "restore_start_request",
        "restore_queued",
        "restore_preparing",
        "restore_in_progress",
        "restore_completed",
    ]
    for ops in (state_op("stop_requested"), counters):
        final = patch(client, agent_secret, rid, ops, **as_agent)
        assert final.status_code == 409
        assert final.json() == {"message": FINAL_MESSAGE}


@pytest.mark.parametrize(
    "ops",
    [
        [],
        {"op": "replace", "path": "/state", "value": "stop_requested"},
        [{"op": "remove", "path": "/state"}],
        [{"op": "replace", "path": "/files_restores", "value": 1}],  # OQ-8: garbled spellings
        [{"op": "replace", "path": "/started- time", "value": "2014-08-05T18:22:22Z"}],
        [{"op": "replace", "path": "/bytes-restored", "value": 1}],
        [{"op": "replace", "path": "/destination_path", "value": "/x"}],
        [{"op": "replace", "path": "/state", "value": "bogus"}],
        [{"op": "replace", "path": "/state", "value": "start_requested"}],
        [{"op": "replace", "path": "/state", "value": "start_scheduled"}],
        [{"op": "replace", "path": "/state", "value": "skipped"}],
        [{"op": "replace", "path": "/state"}],
        [{"op": "replace", "path": "/files_restored", "value": "12"}],
        [{"op": "replace", "path": "/bytes_restored", "value": -1}],
        [{"op": "replace", "path": "/ended_time", "value": "yesterday"}],
        [{"op": "replace", "path": "/errors", "value": {"count": 1}}],
        [
            {"op": "replace", "path": "/state", "value": "queued"},
            {"op": "replace", "path": "/files_restored", "value": "x"},
        ],
    ],
)
def test_bad_patches_are_400_and_change_nothing(client, setup, ops):
    _, _, backup, destination, secret = setup
    rid = start(client, secret, restore_body(backup.id, destination.id)).json()["id"]
    response = patch(client, secret, rid, ops, **{"X-Agent-Id": destination.id})
    assert response.status_code == 400, response.text
    assert response.json()["message"]
    body = client.get(f"/v2/{PROJECT}/restores/{rid}", headers=headers(secret)).json()
    assert body["state"] == "start_requested" and body["files_restored"] == 0
    wrong_type = client.patch(
        f"/v2/{PROJECT}/restores/{rid}", json=state_op("stop_requested"), headers=headers(secret)
    )
    assert wrong_type.status_code == 400  # PATCH needs application/json-patch+json


def test_stop_before_pickup_goes_straight_to_stopped(client, setup):
    _, _, backup, destination, secret = setup
    rid = start(client, secret, restore_body(backup.id, destination.id)).json()["id"]
    response = patch(client, secret, rid, state_op("stop_requested"))
    assert response.status_code == 204 and response.content == b""
    body = client.get(f"/v2/{PROJECT}/restores/{rid}", headers=headers(secret)).json()
    assert body["state"] == "stopped" and body["ended_time"] is not None
    listed = events(client, secret, rid)
    assert [e["event"] for e in listed] == [
        "restore_start_request",
        "restore_stop_request",
        "restore_stopped",
    ]
    assert listed[1]["request_id"] and "request_id" not in listed[2]
    assert listed[1]["restore"] == {"id": rid} and listed[1]["agent"] == {"id": destination.id}
    again = patch(client, secret, rid, state_op("stop_requested"))
    assert again.status_code == 409 and again.json() == {"message": FINAL_MESSAGE}


def test_a_stop_of_a_running_restore_waits_for_the_agent(client, setup, db):
    _, _, backup, destination, secret = setup
    agent_secret = agent_token(db, destination.id)
    rid = start(client, secret, restore_body(backup.id, destination.id)).json()["id"]
    as_agent = {"X-Agent-Id": destination.id}
    assert patch(client, agent_secret, rid, state_op("in_progress"), **as_agent).status_code == 409
    assert patch(client, agent_secret, rid, state_op("queued"), **as_agent).status_code == 204
    # The agent may ask for a stop as well as a user (spec R4, OQ-30); a repeat is a no-op.
    assert (
        patch(client, agent_secret, rid, state_op("stop_requested"), **as_agent).status_code == 204
    )
    assert patch(client, secret, rid, state_op("stop_requested")).status_code == 204
    body = client.get(f"/v2/{PROJECT}/restores/{rid}", headers=headers(secret)).json()
    assert body["state"] == "stop_requested" and body["ended_time"] is None
    assert patch(client, agent_secret, rid, state_op("stopped"), **as_agent).status_code == 204
    assert [e["event"] for e in events(client, secret, rid)][-2:] == [
        "restore_stop_request",
        "restore_stopped",
    ]


def test_restore_events_page_by_event_id(client, setup, db):
    _, _, backup, destination, secret = setup
    agent_secret = agent_token(db, destination.id)
    rid = start(client, secret, restore_body(backup.id, destination.id)).json()["id"]
    for state in ("queued", "preparing", "in_progress", "completed"):
        patch(client, agent_secret, rid, state_op(state), **{"X-Agent-Id": destination.id})
    url = f"/v2/{PROJECT}/restores/{rid}/events"
    all_ids = [e["id"] for e in client.get(url, headers=headers(secret)).json()["events"]]
    assert len(all_ids) == 5 and all_ids == sorted(all_ids, key=int)  # asc by default
    page = client.get(f"{url}?limit=2&marker={all_ids[0]}", headers=headers(secret)).json()
    assert [e["id"] for e in page["events"]] == all_ids[1:3]
    assert {link["rel"] for link in page["links"]} == {"next", "previous"}
    desc = client.get(f"{url}?sort_dir=desc", headers=headers(secret)).json()
    assert [e["id"] for e in desc["events"]] == all_ids[::-1]
    for query in ("marker=abc", "limit=0", "sort_dir=sideways"):
        assert client.get(f"{url}?{query}", headers=headers(secret)).status_code == 400
