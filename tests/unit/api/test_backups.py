"""B1-B4, ER1, EV5 through the HTTP API on SQLite, publishing to a TCP fakeredis broker."""

from __future__ import annotations

import json

import pytest
import redis

from cloudbackup.domain.run_states import BackupState
from factories import rows
from factories.api import OTHER_PROJECT, PROJECT, agent_token, headers, start_backup, token

PATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture
def setup(client, db):
    agent = rows.agent(db)
    config = rows.configuration(db, agent)
    return agent, config, token(db)


def queued(settings) -> int:
    return redis.Redis.from_url(settings.broker_url).llen(settings.backup_queue)


def count_backups(client, secret) -> int:
    return len(client.get(f"/v2/{PROJECT}/backups", headers=headers(secret)).json()["backups"])


def test_start_backup_returns_exactly_the_seed_body(client, setup, settings):
    agent, config, secret = setup
    response = start_backup(client, secret, config.id)

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    backup_id = body["id"]
    base = "http://testserver.local/v2/110011"
    assert response.headers["location"] == f"{base}/backups/{backup_id}"
    assert list(body) == [
        "project_id",
        "id",
        "agent",
        "configuration",
        "state",
        "started_time",
        "ended_time",
        "snapshot_id",
        "errors",
        "files_searched",
        "files_backed_up",
        "bytes_searched",
        "bytes_backed_up",
        "bytes_in_db",
        "bandwidth_avg_bps",
        "restorable",
        "links",
    ]
    assert body == {
        "project_id": "110011",
        "id": backup_id,
        "agent": {"id": agent.id, "links": [{"href": f"{base}/agents/{agent.id}", "rel": "full"}]},
        "configuration": {
            "id": config.id,
            "links": [{"href": f"{base}/configurations/{config.id}", "rel": "full"}],
        },
        "state": "start_requested",
        "started_time": None,
        "ended_time": None,
        "snapshot_id": None,
        "errors": {
            "count": 0,
            "reason": "",
            "diagnostics": "",
            "links": [{"href": f"{base}/backups/{backup_id}/errors", "rel": "full"}],
        },
        "files_searched": 0,
        "files_backed_up": 0,
        "bytes_searched": 0,
        "bytes_backed_up": 0,
        "bytes_in_db": 0,
        "bandwidth_avg_bps": 0,
        "restorable": False,
        "links": [
            {"href": f"{base}/backups/{backup_id}", "rel": "self"},
            {"href": f"{base}/backups/{backup_id}/events", "rel": "events"},
        ],
    }
    assert queued(settings) == 1  # committed, then published once
    assert client.get(response.headers["location"], headers=headers(secret)).json() == body


def test_start_scheduled_needs_the_configurations_agent(client, setup, db):
    agent, config, secret = setup
    body = {"configuration_id": config.id, "state": "start_scheduled"}
    missing = client.post(f"/v2/{PROJECT}/backups", json=body, headers=headers(secret))
    assert missing.status_code == 400
    assert "X-Agent-Id" in missing.json()["errors"][0]
    other = rows.agent(db)
    wrong = client.post(
        f"/v2/{PROJECT}/backups", json=body, headers=headers(secret, **{"X-Agent-Id": other.id})
    )
    assert wrong.status_code == 403
    right = client.post(
        f"/v2/{PROJECT}/backups", json=body, headers=headers(secret, **{"X-Agent-Id": agent.id})
    )
    assert right.status_code == 201
    assert right.json()["state"] == "start_scheduled"


@pytest.mark.parametrize(
    ("raw", "content_type", "message"),
    [
        (b'{"configuration_id": "x", "state": ', "application/json", "Malformed JSON."),
        (b"[]", "application/json", "Validation failed."),
        (b'{"state": "start_requested"}', "application/json", "Validation failed."),
        (b'{"configuration_id": "x"}', "application/json", "Validation failed."),
        (
            b'{"configuration_id": 5, "state": "start_requested"}',
            "application/json",
            "Validation failed.",
        ),
        (b'{"configuration_id": "x", "state": "queued"}', "application/json", "Validation failed."),
        (
            b'{"configuration_id": "x", "state": "start_requested", "x": 1}',
            "application/json",
            "Validation failed.",
        ),
        (
            b'{"configuration_id": "x", "state": "start_requested"}',
            "text/plain",
            "Content-Type must be application/json.",
        ),
        (
            b'{"configuration_id": "x", "state": "start_requested"}',
            "",
            "Content-Type must be application/json.",
        ),
    ],
)
def test_bad_input_is_400_with_a_json_body_and_records_nothing(
    client, setup, settings, raw, content_type, message
):
    _, config, secret = setup
    raw = raw.replace(b'"x"', json.dumps(config.id).encode())
    hdrs = {"X-Auth-Token": secret}
    if content_type:
        hdrs["Content-Type"] = content_type
    response = client.post(f"/v2/{PROJECT}/backups", content=raw, headers=hdrs)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["message"] == message
    assert count_backups(client, secret) == 0
    assert queued(settings) == 0


def test_authentication_and_roles(client, setup, db):
    _, config, _secret = setup
    assert start_backup(client, "", config.id).status_code == 401
    bad = start_backup(client, "0f6e9f63600142f0a970911583522217", config.id)
    assert bad.status_code == 401 and bad.json()["message"]
    observer = token(db, role="observer")
    forbidden = start_backup(client, observer, config.id)
    assert forbidden.status_code == 403 and forbidden.json()["message"]
    assert client.get(f"/v2/{PROJECT}/backups", headers=headers(observer)).status_code == 200
    creator = token(db, role="creator")
    assert start_backup(client, creator, config.id).status_code == 201


def test_unknown_or_foreign_configuration_is_404_alike(client, setup, db):
    _, _, secret = setup
    foreign_agent = rows.agent(db, project_id=OTHER_PROJECT)
    foreign = rows.configuration(db, foreign_agent)
    unknown = start_backup(client, secret, "7c8ee069-568f-4d5a-932f-fb2af86b5fd5")
    theirs = start_backup(client, secret, foreign.id)
    assert unknown.status_code == theirs.status_code == 404
    assert unknown.json() == theirs.json()
    # A token of one project cannot reach another project's paths at all.
    other_path = start_backup(client, secret, foreign.id, project_id=OTHER_PROJECT)
    assert other_path.status_code == 404


def test_method_not_allowed_is_405_json(client, setup):
    _, _, secret = setup
    response = client.put(f"/v2/{PROJECT}/backups", json={}, headers=headers(secret))
    assert response.status_code == 405
    assert response.json()["message"]


def test_deleted_configuration_and_active_run_are_409(client, setup, db):
    agent, config, secret = setup
    assert start_backup(client, secret, config.id).status_code == 201
    second = start_backup(client, secret, config.id)
    assert second.status_code == 409
    assert "already in progress" in second.json()["message"]
    assert count_backups(client, secret) == 1
    gone = rows.configuration(db, agent, deleted=True)
    assert start_backup(client, secret, gone.id).status_code == 409


def test_scheduled_start_of_disabled_configuration_is_409(client, db):
    agent = rows.agent(db)
    config = rows.configuration(db, agent, enabled=False)
    secret = token(db)
    manual = start_backup(client, secret, config.id)
    assert manual.status_code == 201  # manual runs of a disabled configuration are allowed (OQ-9)
    body = {"configuration_id": config.id, "state": "start_scheduled"}
    scheduled = client.post(
        f"/v2/{PROJECT}/backups", json=body, headers=headers(secret, **{"X-Agent-Id": agent.id})
    )
    assert scheduled.status_code == 409


def test_database_down_is_503_json_not_500(settings, fake_broker_url, tmp_path):
    import time

    from litestar.testing import TestClient

    from cloudbackup.queue.publishing import CeleryDispatcher
    from cloudbackup.server import create_app
    from cloudbackup.settings import load_settings
    from cloudbackup.store.db import Database

    down = load_settings(
        {
            "CLOUDBACKUP_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            "CLOUDBACKUP_BROKER_URL": fake_broker_url,
            "CLOUDBACKUP_DATA_DIR": str(tmp_path),
            "CLOUDBACKUP_DATABASE_CONNECT_TIMEOUT": "2",
        }
    )
    db = Database(down.resolved_database_url, connect_timeout=2)
    app = create_app(down, database=db, dispatcher=CeleryDispatcher.from_settings(down))
    with TestClient(app=app) as client:
        started = time.monotonic()
        response = start_backup(
            client, "0f6e9f63600142f0a970911583522217", "7c8ee069-568f-4d5a-932f-fb2af86b5fd5"
        )
        assert response.status_code == 503
        assert time.monotonic() - started < 10
        assert response.json()["message"].startswith("The database is unreachable")
        assert response.headers["retry-after"]


def test_list_backups_pages_with_marker_limit_and_links(client, db):
    secret = token(db)
    agent = rows.agent(db)
    ids = []
    for _ in range(5):
        config = rows.configuration(db, agent)
        ids.append(start_backup(client, secret, config.id).json()["id"])
    base = "http://testserver.local/v2/110011/backups"

    first = client.get(f"/v2/{PROJECT}/backups?limit=2", headers=headers(secret)).json()
    assert [b["id"] for b in first["backups"]] == ids[::-1][:2]  # newest first by default
    assert first["links"] == [{"href": f"{base}?limit=2&marker={ids[3]}", "rel": "next"}]

    second = client.get(first["links"][0]["href"], headers=headers(secret)).json()
    assert [b["id"] for b in second["backups"]] == [ids[2], ids[1]]
    assert {link["rel"] for link in second["links"]} == {"next", "previous"}
    previous = next(link for link in second["links"] if link["rel"] == "previous")
    assert previous["href"] == f"{base}?limit=2&marker={ids[2]}&sort_dir=asc"
    assert [
        b["id"] for b in client.get(previous["href"], headers=headers(secret)).json()["backups"]
    ] == [ids[3], ids[4]]

    ascending = client.get(f"/v2/{PROJECT}/backups?sort_dir=asc", headers=headers(secret)).json()
    assert [b["id"] for b in ascending["backups"]] == ids
    assert ascending["links"] == []

    for query in (
        "limit=0",
        "limit=101",
        "limit=x",
        "sort_dir=up",
        "marker=nope",
        "restorable=maybe",
    ):
        response = client.get(f"/v2/{PROJECT}/backups?{query}", headers=headers(secret))
        assert response.status_code == 400, query
        assert response.json()["message"] == "Validation failed."

    assert (
        client.get(f"/v2/{PROJECT}/backups?restorable=true", headers=headers(secret)).json()[
            "backups"
        ]
        == []
    )


def test_unknown_backup_is_404(client, db):
    secret = token(db)
    for suffix in ("", "/errors", "/events"):
        response = client.get(
            f"/v2/{PROJECT}/backups/0d95d699-d16b-11e4-93bd-c8e0eb190e3d{suffix}",
            headers=headers(secret),
        )
        assert response.status_code == 404
        assert response.json() == {"message": "Backup not found."}


def test_errors_of_a_fresh_backup_are_empty(client, setup):
    _, config, secret = setup
    backup_id = start_backup(client, secret, config.id).json()["id"]
    body = client.get(f"/v2/{PROJECT}/backups/{backup_id}/errors", headers=headers(secret)).json()
    assert body == {
        "count": 0,
        "reason": "",
        "diagnostics": "",
        "list": [],
        "links": [
            {"href": f"http://testserver.local/v2/110011/backups/{backup_id}/errors", "rel": "self"}
        ],
    }


def patch(client, secret, backup_id, ops, **extra):
    return client.patch(
        f"/v2/{PROJECT}/backups/{backup_id}",
        content=json.dumps(ops).encode(),
        headers={"X-Auth-Token": secret, **PATCH, **extra},
    )


def test_stop_before_pickup_goes_straight_to_stopped(client, setup):
    _, config, secret = setup
    backup_id = start_backup(client, secret, config.id).json()["id"]
    response = patch(
        client, secret, backup_id, [{"op": "replace", "path": "/state", "value": "stop_requested"}]
    )
    assert response.status_code == 204 and response.content == b""
    body = client.get(f"/v2/{PROJECT}/backups/{backup_id}", headers=headers(secret)).json()
    assert body["state"] == "stopped"
    assert body["ended_time"] is not None
    events = client.get(
        f"/v2/{PROJECT}/backups/{backup_id}/events", headers=headers(secret)
    ).json()["events"]
    assert [e["event"] for e in events] == [
        "backup_start_request",
        "backup_stop_request",
        "backup_stopped",
    ]
    assert events[1]["request_id"] and "request_id" not in events[2]
    # the configuration is free again
    assert start_backup(client, secret, config.id).status_code == 201


def test_agent_reports_progress_and_final_result(client, setup, db, settings):
    agent, config, secret = setup
    agent_secret = agent_token(db, agent.id)
    rows.stored_snapshot(settings, agent.vault_id, 1111)  # the snapshot the agent reports
    backup_id = start_backup(client, secret, config.id).json()["id"]
    as_agent = {"X-Agent-Id": agent.id}
    for state in ("queued", "preparing", "in_progress"):
        assert (
            patch(
                client,
                agent_secret,
                backup_id,
                [{"op": "replace", "path": "/state", "value": state}],
                **as_agent,
            ).status_code
            == 204
        )
    report = [
        {"op": "replace", "path": "/state", "value": "completed_with_errors"},
        {"op": "add", "path": "/started_time", "value": "2014-08-05T18:22:22.238641Z"},
        {"op": "replace", "path": "/ended_time", "value": "2014-08-05T18:23:50.489715Z"},
        {"op": "replace", "path": "/snapshot_id", "value": 1111},
        {"op": "replace", "path": "/files_searched", "value": 1222},
        {"op": "replace", "path": "/files_backed_up", "value": 6},
        {"op": "replace", "path": "/bytes_searched", "value": 3700000000},
        {"op": "replace", "path": "/bytes_backed_up", "value": 127000000},
        {"op": "replace", "path": "/bytes_in_db", "value": 49340871},
        {"op": "replace", "path": "/bandwidth_avg_bps", "value": 16628982},
        {
            "op": "replace",
            "path": "/errors",
            "value": {
                "count": 1,
                "reason": "unable_to_process_some_files",
                "diagnostics": "Some files could not be backed up. Partial list follows.",
                "list": [
                    {
                        "index": 0,
                        "path": "/web/a.txt",
                        "type": "file_or_folder_missing",
                        "exception": {"code": 3015, "description": "gone", "details": "trace"},
                    }
                ],
            },
        },
    ]
    assert patch(client, agent_secret, backup_id, report, **as_agent).status_code == 204
    body = client.get(f"/v2/{PROJECT}/backups/{backup_id}", headers=headers(secret)).json()
    assert body["state"] == "completed_with_errors"
    assert body["started_time"] == "2014-08-05T18:22:22.238641Z"
    assert body["ended_time"] == "2014-08-05T18:23:50.489715Z"
    assert body["snapshot_id"] == 1111 and body["restorable"] is True
    assert (body["files_searched"], body["bytes_in_db"], body["bandwidth_avg_bps"]) == (
        1222,
        49340871,
        16628982,
    )
    assert body["errors"]["count"] == 1
    errors = client.get(f"/v2/{PROJECT}/backups/{backup_id}/errors", headers=headers(secret)).json()
    assert errors["list"] == [
        {
            "index": 0,
            "path": "/web/a.txt",
            "type": "file_or_folder_missing",
            "description": "The item was found during the search but was missing when we tried to back it up.",
            "exception": {"code": 3015, "description": "gone", "details": "trace"},
        }
    ]
    final = patch(
        client, secret, backup_id, [{"op": "replace", "path": "/state", "value": "stop_requested"}]
    )
    assert final.status_code == 409


@pytest.mark.parametrize(
    "ops",
    [
        [],
        {"op": "replace", "path": "/state", "value": "stop_requested"},
        [{"op": "remove", "path": "/state"}],
        [{"op": "replace", "path": "/restorable", "value": True}],
        [{"op": "replace", "path": "/state", "value": "bogus"}],
        [{"op": "replace", "path": "/state", "value": "start_requested"}],
        [{"op": "replace", "path": "/state"}],
        [{"op": "replace", "path": "/files_searched", "value": "12"}],
        [{"op": "replace", "path": "/files_searched", "value": -1}],
        [{"op": "replace", "path": "/ended_time", "value": "yesterday"}],
        [{"op": "replace", "path": "/errors", "value": {"count": 1}}],
    ],
)
def test_bad_patches_are_400_and_change_nothing(client, setup, ops):
    agent, config, secret = setup
    backup_id = start_backup(client, secret, config.id).json()["id"]
    response = patch(client, secret, backup_id, ops, **{"X-Agent-Id": agent.id})
    assert response.status_code == 400, response.text
    assert response.json()["message"]
    assert (
        client.get(f"/v2/{PROJECT}/backups/{backup_id}", headers=headers(secret)).json()["state"]
        == "start_requested"
    )


def test_patch_rules_on_who_and_what(client, setup, db):
    agent, config, secret = setup
    agent_secret = agent_token(db, agent.id)
    backup_id = start_backup(client, secret, config.id).json()["id"]
    progress = [{"op": "replace", "path": "/state", "value": "queued"}]
    assert (
        patch(client, secret, backup_id, progress).status_code == 403
    )  # users cannot report progress
    skip = [{"op": "replace", "path": "/state", "value": "completed"}]
    response = patch(client, agent_secret, backup_id, skip, **{"X-Agent-Id": agent.id})
    assert response.status_code == 409  # start_requested -> completed is not a transition
    wrong_type = client.patch(
        f"/v2/{PROJECT}/backups/{backup_id}",
        json=progress,
        headers=headers(agent_secret, **{"X-Agent-Id": agent.id}),
    )
    assert wrong_type.status_code == 400  # PATCH needs application/json-patch+json
    observer = token(db, role="observer")
    stop = [{"op": "replace", "path": "/state", "value": "stop_requested"}]
    assert patch(client, observer, backup_id, stop).status_code == 403
    assert (
        BackupState(
            client.get(f"/v2/{PROJECT}/backups/{backup_id}", headers=headers(secret)).json()[
                "state"
            ]
        )
        is BackupState.START_REQUESTED
    )


def test_final_report_without_ended_time_gets_the_servers_time(client, setup, db):
    agent, config, secret = setup
    agent_secret = agent_token(db, agent.id)
    backup_id = start_backup(client, secret, config.id).json()["id"]
    as_agent = {"X-Agent-Id": agent.id}
    assert (
        patch(
            client,
            agent_secret,
            backup_id,
            [{"op": "add", "path": "/state", "value": "in_progress"}],
            **as_agent,
        ).status_code
        == 409
    )
    for state in ("queued", "in_progress", "failed"):
        assert (
            patch(
                client,
                agent_secret,
                backup_id,
                [{"op": "add", "path": "/state", "value": state}],
                **as_agent,
            ).status_code
            == 204
        )
    body = client.get(f"/v2/{PROJECT}/backups/{backup_id}", headers=headers(secret)).json()
    assert (
        body["state"] == "failed" and body["ended_time"] is not None and body["restorable"] is False
    )


def test_nul_characters_never_reach_the_database(client, setup):
    _, _config, secret = setup
    assert client.get(f"/v2/{PROJECT}/backups/a%00b", headers=headers(secret)).status_code == 404
    assert (
        client.get(f"/v2/{PROJECT}/backups?marker=a%00b", headers=headers(secret)).status_code
        == 400
    )
    body = b'{"configuration_id": "a\\u0000b", "state": "start_requested"}'
    response = client.post(f"/v2/{PROJECT}/backups", content=body, headers=headers(secret))
    assert response.status_code == 400
    assert response.json()["errors"] == ["Strings may not contain NUL characters."]


def test_er1_exception_details_is_a_string_even_when_nothing_was_added():
    from types import SimpleNamespace

    from cloudbackup.api.schemas.backups import error_list_out
    from cloudbackup.store.tables import Backup, BackupError

    row = Backup(
        id="b",
        project_id=PROJECT,
        agent_id="a",
        configuration_id="c",
        vault_id="v",
        state="completed_with_errors",
        request_id="r",
        errors_count=1,
        errors_reason="unable_to_process_some_files",
        errors_diagnostics="d",
    )
    item = BackupError(
        backup_id="b",
        index=0,
        path="/web/a",
        type="file_unreadable",
        exception_code=13,
        exception_description="Permission denied",
    )
    links = SimpleNamespace(link=lambda rel, *parts: SimpleNamespace(href="/".join(parts), rel=rel))
    (out,) = error_list_out(row, [item], links).items
    assert out.exception.details == ""


def test_er1_tells_an_inclusion_that_never_existed_from_a_file_that_vanished(client, db, setup):
    from cloudbackup.store.tables import BackupError

    _, config, secret = setup
    backup = rows.backup(db, config.id, state="completed_with_errors", errors_count=2)
    with db.transaction() as session:
        session.add(
            BackupError(backup_id=backup.id, index=0, path="/srv/old/", type="inclusion_missing")
        )
        session.add(
            BackupError(
                backup_id=backup.id, index=1, path="/srv/a.tmp", type="file_or_folder_missing"
            )
        )
    url = f"/v2/{PROJECT}/backups/{backup.id}/errors"
    items = client.get(url, headers=headers(secret)).json()["list"]
    assert [(e["type"], e["description"]) for e in items] == [
        ("inclusion_missing", "The item did not exist when the backup started."),
        (
            "file_or_folder_missing",
            "The item was found during the search but was missing when we tried to back it up.",
        ),
    ]
