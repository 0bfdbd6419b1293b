"""B5/B6 (browse a backup) and A10/A11 (browse the host) through the HTTP API on SQLite; the
worker's part (`answer_browse`) runs in-process against the test's real vault and folders."""

from __future__ import annotations

import base64
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from cloudbackup.domain.browse import answer_browse, sweep_browse
from cloudbackup.store.tables import BrowseRequest, Event, utcnow
from factories import rows
from factories.api import OTHER_PROJECT, PROJECT, headers, token
from factories.runs import Recorder, backed_up

BASE = "http://testserver.local/v2/110011"
ODD = b"caf\xe9.bin"  # a Latin-1 name: not UTF-8


def published(settings) -> list[tuple[str, str]]:
    raw = redis.Redis.from_url(settings.broker_url).lrange(settings.backup_queue, 0, -1)
    return [(m["headers"]["task"], m["headers"]["argsrepr"]) for m in map(json.loads, raw)]


def make_folder(root: Path) -> Path:
    (root / "docs" / "deep").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"hello")
    (root / "docs" / "deep" / "x.json").write_bytes(b"{}")
    os.symlink("a.txt", root / "link")
    with open(os.path.join(os.fsencode(root), ODD), "wb") as f:
        f.write(b"123")
    return root


ROOT_ITEMS = [
    {"name": "a.txt", "name_encoded": "", "bytes": 5, "mime_type": "text/plain"},
    {
        "name": "caf\\xe9.bin",
        "name_encoded": base64.b64encode(ODD).decode(),
        "bytes": 3,
        "mime_type": "application/octet-stream",
    },
    {"name": "docs", "name_encoded": "", "bytes": 0, "mime_type": "application/x-directory"},
    {"name": "link", "name_encoded": "", "bytes": 0, "mime_type": "application/x-symlink-file"},
]


@pytest.fixture
def backup_setup(client, db, settings, tmp_path):
    root = make_folder(tmp_path / "src")
    agent, config, backup = backed_up(db, settings, root)
    return root, agent, config, backup, token(db)


def ask_backup(client, secret, backup_id, agent_id, path, **overrides):
    body = {
        "agent_id": agent_id,
        "encrypted_password_hex": None,
        "path": path,
        "path_encoded": None,
    }
    body.update(overrides)
    return client.post(
        f"/v2/{PROJECT}/backups/{backup_id}/browse-requests", json=body, headers=headers(secret)
    )


def ask_host(client, secret, agent_id, path, project_id=PROJECT, **overrides):
    body = {"path": path, "path_encoded": None, **overrides}
    return client.post(
        f"/v2/{project_id}/agents/{agent_id}/browse-requests", json=body, headers=headers(secret)
    )


def answered(db, settings, client, secret, location) -> dict:
    request_id = location.rsplit("/", 1)[1]
    assert answer_browse(db, settings, request_id) in ("answered", "failed")
    response = client.get(location, headers=headers(secret))
    assert response.status_code == 200, response.text
    return response.json()


def test_browse_a_backup_folder(client, db, settings, backup_setup):
    root, agent, config, backup, secret = backup_setup
    response = ask_backup(client, secret, backup.id, agent.id, f"{root}/")

    assert response.status_code == 202, response.text
    assert response.content == b""
    location = response.headers["location"]
    request_id = location.rsplit("/", 1)[1]
    # OQ-14: the real, plural route of the result, under the backup.
    assert location == f"{BASE}/backups/{backup.id}/browse-requests/{request_id}"
    assert published(settings)[-1] == ("cloudbackup.run_browse", repr([request_id]))
    pending = client.get(location, headers=headers(secret))
    assert pending.status_code == 404 and pending.json()["message"]  # until the agent answers

    body = answered(db, settings, client, secret, location)
    assert list(body) == [
        "id",
        "time",
        "event",
        "agent",
        "request_id",
        "succeeded",
        "path",
        "path_encoded",
        "items",
    ]
    assert body["event"] == "backup_browsed" and body["succeeded"] is True
    assert body["agent"] == {"id": agent.id} and body["request_id"] == request_id
    assert body["path"] == f"{root}/" and body["path_encoded"] == ""
    assert body["items"] == ROOT_ITEMS
    assert body["time"].endswith("Z")
    with db.transaction() as session:
        stream = {
            e.event: e
            for e in session.execute(sa.select(Event).where(Event.project_id == PROJECT)).scalars()
        }
    # OQ-25: the result's id is the id of the answer's event.
    assert body["id"] == str(stream["backup_browsed"].id)
    ask = stream["backup_browse"]
    assert (ask.agent_id, ask.backup_id, ask.configuration_id) == (agent.id, backup.id, config.id)
    assert ask.members == {
        "agent": {"id": agent.id, "vault": {"id": agent.vault_id, "encrypted": False}},
        "configuration": {"id": config.id},
        "backup": {"snapshot_id": backup.snapshot_id},
        "request_id": request_id,
        "path": f"{root}/",
        "path_encoded": "",
        "encrypted_password_hex": None,
    }
    # EV5 lists the request.
    ev5 = client.get(f"/v2/{PROJECT}/backups/{backup.id}/events", headers=headers(secret)).json()
    assert "backup_browse" in [e["event"] for e in ev5["events"]]


def test_browse_deeper_above_and_outside_the_backed_up_folder(client, db, settings, backup_setup):
    root, agent, _, backup, secret = backup_setup
    deep = ask_backup(client, secret, backup.id, agent.id, f"{root}/docs")
    body = answered(db, settings, client, secret, deep.headers["location"])
    assert body["path"] == f"{root}/docs/"
    assert body["items"] == [
        {"name": "deep", "name_encoded": "", "bytes": 0, "mime_type": "application/x-directory"}
    ]
    # Ancestors of what was backed up have no entries of their own: listed as directories.
    top = ask_backup(client, secret, backup.id, agent.id, "/")
    first = str(root).strip("/").split("/")[0]
    assert [
        i["name"] for i in answered(db, settings, client, secret, top.headers["location"])["items"]
    ] == [first]
    # A path the backup does not hold, or a file, cannot be listed.
    for path in (f"{root}/missing/", f"{root}/a.txt"):
        response = ask_backup(client, secret, backup.id, agent.id, path)
        body = answered(db, settings, client, secret, response.headers["location"])
        assert body["succeeded"] is False and body["items"] == []


def test_path_encoded_names_a_directory_that_is_not_utf8(client, db, settings, tmp_path):
    root = tmp_path / "src"
    odd = os.path.join(os.fsencode(root), b"dir\xff")
    os.makedirs(odd)
    with open(os.path.join(odd, b"f"), "wb") as f:
        f.write(b"x")
    agent, _, backup = backed_up(db, settings, root)
    secret = token(db)
    encoded = base64.b64encode(odd).decode()
    response = ask_backup(
        client, secret, backup.id, agent.id, f"{root}/dir\\xff", path_encoded=encoded
    )
    assert response.status_code == 202, response.text
    body = answered(db, settings, client, secret, response.headers["location"])
    assert body["succeeded"] is True
    assert body["path_encoded"] == base64.b64encode(odd + b"/").decode()
    assert [i["name"] for i in body["items"]] == ["f"]


def test_results_expire(client, db, settings, backup_setup):
    root, agent, _, backup, secret = backup_setup
    location = ask_backup(client, secret, backup.id, agent.id, f"{root}/").headers["location"]
    answered(db, settings, client, secret, location)
    old = utcnow() - timedelta(seconds=settings.browse_result_seconds + 1)
    with db.transaction() as session:
        session.execute(sa.update(BrowseRequest).values(answered_at=old))
    gone = client.get(location, headers=headers(secret))
    assert gone.status_code == 404
    assert gone.json() == {"message": "Browse request not found (unknown, or its result expired)."}
    report = sweep_browse(db, Recorder(), settings)
    assert report.purged == 1


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"path": "relative"}, "must be absolute"),
        ({"path": "/a/../b"}, "'..' component"),
        ({"path": None}, None),
        ({"agent_id": 5}, None),
        ({"path_encoded": "%%%"}, "base64"),
        ({"path_encoded": base64.b64encode(b"rel/x").decode()}, "must be absolute"),
        ({"encrypted_password_hex": "xyz"}, "hexadecimal"),
        ({"extra": 1}, None),
    ],
)
def test_bad_browse_bodies_are_400_and_record_nothing(
    client, db, settings, backup_setup, change, error
):
    root, agent, _, backup, secret = backup_setup
    body = {"agent_id": agent.id, "encrypted_password_hex": None, "path": f"{root}/"}
    body = {**body, "path_encoded": None, **change}
    response = client.post(
        f"/v2/{PROJECT}/backups/{backup.id}/browse-requests", json=body, headers=headers(secret)
    )
    assert response.status_code == 400, response.text
    assert response.json()["message"] == "Validation failed."
    if error:
        assert any(error in text for text in response.json()["errors"]), response.json()
    with db.transaction() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(BrowseRequest)).scalar() == 0
    assert published(settings) == []


def test_browse_request_errors(client, db, settings, backup_setup):
    _root, agent, config, backup, secret = backup_setup
    for key in ("agent_id", "encrypted_password_hex", "path", "path_encoded"):
        body = {
            "agent_id": agent.id,
            "encrypted_password_hex": None,
            "path": "/",
            "path_encoded": None,
        }
        del body[key]
        response = client.post(
            f"/v2/{PROJECT}/backups/{backup.id}/browse-requests", json=body, headers=headers(secret)
        )
        assert response.json() == {
            "message": "Validation failed.",
            "errors": [f"{key} is required."],
        }
    unknown = ask_backup(client, secret, "0d95d699-d16b-11e4-93bd-c8e0eb190e3d", agent.id, "/")
    assert unknown.status_code == 404 and unknown.json() == {"message": "Backup not found."}
    foreign = rows.agent(db, project_id=OTHER_PROJECT)
    nobody = ask_backup(client, secret, backup.id, foreign.id, "/")
    assert nobody.status_code == 404 and nobody.json() == {"message": "Agent not found."}
    running = rows.backup(db, config.id, state="in_progress")
    conflict = ask_backup(client, secret, running.id, agent.id, "/")
    assert conflict.status_code == 409 and "no snapshot" in conflict.json()["message"]
    assert ask_backup(client, "", backup.id, agent.id, "/").status_code == 401
    observer = token(db, role="observer")
    assert ask_backup(client, observer, backup.id, agent.id, "/").status_code == 403
    location = ask_backup(client, secret, backup.id, agent.id, "/").headers["location"]
    answer_browse(db, settings, location.rsplit("/", 1)[1])
    assert client.get(location, headers=headers(observer)).status_code == 200
    # The result belongs to its backup: another backup's path does not show it.
    other = rows.backup(db, config.id, restorable=True, snapshot_id=99)
    elsewhere = location.replace(backup.id, other.id)
    assert client.get(elsewhere, headers=headers(secret)).status_code == 404
    unknown_request = location.rsplit("/", 1)[0] + "/ae7528c8-bcc3-4356-a237-f20fbdd79ee4"
    assert client.get(unknown_request, headers=headers(secret)).status_code == 404
    assert client.put(location, headers=headers(secret)).status_code == 405
    assert client.delete(location, headers=headers(secret)).status_code == 405
    listing = client.get(location.rsplit("/", 1)[0], headers=headers(secret))
    assert listing.status_code == 405  # requests are not listed


def test_browse_the_host(client, db, settings, tmp_path):
    root = make_folder(tmp_path / "host")
    agent = rows.agent(db)
    secret = token(db)
    response = ask_host(client, secret, agent.id, str(root))
    assert response.status_code == 202 and response.content == b""
    location = response.headers["location"]
    request_id = location.rsplit("/", 1)[1]
    assert location == f"{BASE}/agents/{agent.id}/browse-requests/{request_id}"
    assert client.get(location, headers=headers(secret)).status_code == 404
    body = answered(db, settings, client, secret, location)
    assert body["event"] == "host_browsed" and body["succeeded"] is True
    assert body["path"] == f"{root}/" and body["request_id"] == request_id
    assert body["items"] == ROOT_ITEMS
    with db.transaction() as session:
        asked = session.execute(sa.select(Event).where(Event.event == "host_browse")).scalar_one()
    assert asked.agent_id == agent.id
    assert asked.members == {
        "agent": {"id": agent.id},
        "request_id": request_id,
        "path": str(root),
        "path_encoded": "",
    }
    assert answer_browse(db, settings, request_id) == "noop"  # a second delivery
    missing = ask_host(client, secret, agent.id, str(root / "missing"))
    failed = answered(db, settings, client, secret, missing.headers["location"])
    assert failed["succeeded"] is False and failed["items"] == []
    other = rows.agent(db)
    assert (
        client.get(location.replace(agent.id, other.id), headers=headers(secret)).status_code == 404
    )


def test_host_browse_errors(client, db):
    agent = rows.agent(db)
    secret = token(db)
    assert ask_host(client, secret, "8f135b4f-7a69-4b8a-947f-5e80d772fd97", "/").status_code == 404
    assert ask_host(client, secret, agent.id, "/", project_id=OTHER_PROJECT).status_code == 404
    assert ask_host(client, secret, agent.id, "etc").status_code == 400
    response = client.post(
        f"/v2/{PROJECT}/agents/{agent.id}/browse-requests",
        json={"path": "/"},
        headers=headers(secret),
    )
    assert response.json() == {
        "message": "Validation failed.",
        "errors": ["path_encoded is required."],
    }
    assert ask_host(client, token(db, role="observer"), agent.id, "/").status_code == 403
    assert ask_host(client, "", agent.id, "/").status_code == 401


def test_sweeper_republishes_unanswered_requests(client, db, settings):
    agent = rows.agent(db)
    secret = token(db)
    request_id = ask_host(client, secret, agent.id, "/").headers["location"].rsplit("/", 1)[1]
    recorder = Recorder()
    assert sweep_browse(db, recorder, settings).republished == 0
    later = utcnow() + timedelta(seconds=settings.sweep_after_seconds + 1)
    assert sweep_browse(db, recorder, settings, now=later).republished == 1
    assert recorder.published == [("browse", request_id, agent.id)]


def test_the_202_of_a_browse_request_is_documented_as_what_it_is(client, db, tmp_path):
    """B5/A10 answer 202 with an empty text/plain body and the Location; the OpenAPI document
    said application/json, which the fuzz test found for A10 (ST105)."""
    agent = rows.agent(db)
    secret = token(db)
    answer = ask_host(client, secret, agent.id, str(make_folder(tmp_path / "host")))
    assert answer.status_code == 202 and answer.content == b""
    media_type = answer.headers["content-type"].split(";")[0]
    paths = client.get("/schema/openapi.json").json()["paths"]
    for owner in ("agents/{agent_id}", "backups/{backup_id}"):
        accepted = paths[f"/v2/{{project_id}}/{owner}/browse-requests"]["post"]["responses"]["202"]
        assert list(accepted["content"]) == [media_type], (owner, accepted)
