"""Restores, browsing and cleanups through the API with a real Celery worker (PostgreSQL +
Redis): the worker acts as every agent, so "another agent" is another agent row on this host.

This module runs its own worker on its own queues, with restores capped at 4 MiB/s so that a
running restore can be watched and stopped.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from litestar.testing import TestClient

from cloudbackup.queue.names import QueueNames
from cloudbackup.queue.publishing import CeleryDispatcher
from cloudbackup.server import create_app
from cloudbackup.settings import Settings, load_settings
from cloudbackup.store.tables import Backup, utcnow
from factories import rows
from factories.api import headers, start_backup, start_restore, token
from factories.services import REDIS_URL, WorkerProcess
from factories.trees import digests, make_tree

pytestmark = pytest.mark.services

P = "/v2/110011"
PATCH = {"Content-Type": "application/json-patch+json"}
RESTORE_BPS = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def restore_env(integration_env: dict[str, str]) -> dict[str, str]:
    return {
        **integration_env,
        "CLOUDBACKUP_BACKUP_QUEUE": f"restores-test-{uuid.uuid4().hex[:8]}",
        "CLOUDBACKUP_RESTORE_MAX_BPS": str(RESTORE_BPS),
    }


@pytest.fixture(scope="module")
def restore_worker(
    restore_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    client = redis.Redis.from_url(REDIS_URL)
    for queue in QueueNames(restore_env["CLOUDBACKUP_BACKUP_QUEUE"]).shared():
        client.delete(queue)
    log = tmp_path_factory.mktemp("logs") / "restore-worker.log"
    process = WorkerProcess(restore_env, log, name="restores").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def restore_settings(restore_env: dict[str, str]) -> Settings:
    return load_settings(restore_env)


@pytest.fixture
def rapi(restore_settings, pg_db, restore_worker) -> Iterator[TestClient]:  # type: ignore[type-arg]
    app = create_app(
        restore_settings,
        database=pg_db,
        dispatcher=CeleryDispatcher.from_settings(restore_settings),
    )
    with TestClient(app=app) as client:
        yield client


def _backup(rapi, pg_db, wait_for, secret, root: Path, *, agent=None, **config) -> dict:
    agent = agent or rows.agent(pg_db)
    configuration = rows.configuration(
        pg_db,
        agent,
        inclusions=[{"type": "folder", "path": f"{root}/"}],
        exclusions=[{"type": "folder", "path": f"{root}/cache/"}],
        **config,
    )
    created = start_backup(rapi, secret, configuration.id)
    assert created.status_code == 201, created.text
    body = wait_for(rapi, created.headers["location"], headers(secret))
    assert body["state"] == "completed" and body["restorable"], body
    body["agent_row"] = agent
    return body


def _restore(rapi, secret, backup_id, agent_id, destination, **overrides) -> dict:
    response = start_restore(rapi, secret, backup_id, agent_id, destination, **overrides)
    assert response.status_code == 201, response.text
    return response.json()


def _restored(out: Path, root: Path) -> Path:
    return out / str(root).lstrip("/")


def _expected(root: Path) -> dict[str, str]:
    return {k: v for k, v in digests(root).items() if not k.startswith("cache")}


def _events(rapi, secret, restore_id) -> list[str]:
    response = rapi.get(f"{P}/restores/{restore_id}/events", headers=headers(secret))
    return [e["event"] for e in response.json()["events"] if e["event"] != "restore_progress"]


def test_restore_to_another_path_and_another_agent_is_byte_identical(
    rapi, pg_db, wait_for, tmp_path
):
    tree = make_tree(tmp_path / "src", files=50, size=30_000, big_files=1, big_size=1024 * 1024)
    secret = token(pg_db)
    backup = _backup(rapi, pg_db, wait_for, secret, tree.root)
    other_agent = rows.agent(pg_db)

    same = _restore(rapi, secret, backup["id"], backup["agent_row"].id, tmp_path / "same")
    other = _restore(rapi, secret, backup["id"], other_agent.id, tmp_path / "other")
    for started, out in ((same, tmp_path / "same"), (other, tmp_path / "other")):
        body = wait_for(rapi, f"{P}/restores/{started['id']}", headers(secret))
        assert body["state"] == "completed", body
        assert (body["files_restored"], body["bytes_restored"]) == (tree.files, tree.bytes)
        assert body["started_time"] and body["ended_time"]
        assert digests(_restored(out, tree.root)) == _expected(tree.root)
        assert _events(rapi, secret, started["id"]) == [
            "restore_start_request",
            "restore_queued",
            "restore_preparing",
            "restore_in_progress",
            "restore_completed",
        ]
    assert other["destination_agent"]["id"] == other_agent.id


def test_restore_with_inclusions_and_exclusions(rapi, pg_db, wait_for, tmp_path):
    tree = make_tree(tmp_path / "src", files=40, size=5000)
    secret = token(pg_db)
    backup = _backup(rapi, pg_db, wait_for, secret, tree.root)
    root = tree.root
    started = _restore(
        rapi,
        secret,
        backup["id"],
        backup["agent_row"].id,
        tmp_path / "out",
        inclusions=[
            {"type": "folder", "path": f"{root}/d2/"},
            {"type": "file", "path": f"{root}/d3/sub0/file3.bin"},
        ],
        exclusions=[{"type": "folder", "path": f"{root}/d2/sub1/"}],
    )
    body = wait_for(rapi, f"{P}/restores/{started['id']}", headers(secret))
    assert body["state"] == "completed", body
    got = {k for k, v in digests(_restored(tmp_path / "out", root)).items() if v != "dir"}
    expected = {
        k
        for k, v in _expected(root).items()
        if v != "dir"
        and ((k.startswith("d2/") and not k.startswith("d2/sub1/")) or k == "d3/sub0/file3.bin")
    }
    assert got == expected and body["files_restored"] == len(expected)


@pytest.mark.slow
def test_a_slow_restore_reports_progress_and_stops_within_two_seconds(
    rapi, pg_db, wait_for, tmp_path
):
    # 24 MiB restored at 4 MiB/s: about 6 s of work to watch.
    tree = make_tree(tmp_path / "src", files=5, big_files=6, big_size=4 * 1024 * 1024)
    secret = token(pg_db)
    backup = _backup(rapi, pg_db, wait_for, secret, tree.root)
    started = _restore(rapi, secret, backup["id"], backup["agent_row"].id, tmp_path / "out")
    url = f"{P}/restores/{started['id']}"
    seen = wait_for(
        rapi,
        url,
        headers(secret),
        predicate=lambda b: b["state"] == "in_progress" and b["bytes_restored"] > 0,
        interval=0.05,
    )
    later = wait_for(
        rapi, url, headers(secret), predicate=lambda b: b["bytes_restored"] > seen["bytes_restored"]
    )
    assert later["state"] == "in_progress"
    stop = rapi.patch(
        url,
        json=[{"op": "replace", "path": "/state", "value": "stop_requested"}],
        headers=headers(secret, **PATCH),
    )
    assert stop.status_code == 204, stop.text
    asked = time.monotonic()
    final = wait_for(rapi, url, headers(secret), timeout=10, interval=0.05)
    assert final["state"] == "stopped" and time.monotonic() - asked < 2.0
    assert 0 < final["bytes_restored"] < tree.bytes
    assert _events(rapi, secret, started["id"])[-2:] == ["restore_stop_request", "restore_stopped"]
    progress = rapi.get(f"{url}/events", headers=headers(secret)).json()["events"]
    assert any(
        e["event"] == "restore_progress" and e["total_bytes"] == tree.bytes for e in progress
    )


def test_completed_with_errors_when_a_destination_file_cannot_be_written(
    rapi, pg_db, wait_for, tmp_path
):
    tree = make_tree(tmp_path / "src", files=10, size=3000)
    secret = token(pg_db)
    backup = _backup(rapi, pg_db, wait_for, secret, tree.root)
    out = tmp_path / "out"
    blocked = _restored(out, tree.root) / "d0" / "sub0" / "file0.bin"
    (blocked / "a-directory-where-a-file-must-go").mkdir(parents=True)
    started = _restore(
        rapi, secret, backup["id"], backup["agent_row"].id, out, overwrite_files=True
    )
    body = wait_for(rapi, f"{P}/restores/{started['id']}", headers(secret))
    assert body["state"] == "completed_with_errors", body
    assert body["errors"]["count"] == 1
    assert body["errors"]["reason"] == "unable_to_process_some_files"
    assert body["errors"]["diagnostics"] == "Some files may not have been restored."
    assert body["files_restored"] == tree.files - 1
    errors = rapi.get(f"{P}/restores/{started['id']}/errors", headers=headers(secret)).json()
    [item] = errors["list"]
    assert (item["index"], item["path"], item["type"]) == (0, str(blocked), "file_unwritable")
    assert item["description"] and item["exception"]["code"] > 0
    assert _events(rapi, secret, started["id"])[-1] == "restore_completed"


def test_browse_a_backup_and_the_host(rapi, pg_db, wait_for, tmp_path):
    tree = make_tree(tmp_path / "src", files=30, size=1000)
    secret = token(pg_db)
    backup = _backup(rapi, pg_db, wait_for, secret, tree.root)
    agent_id = backup["agent_row"].id

    def result(location: str) -> dict:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            response = rapi.get(location, headers=headers(secret))
            if response.status_code == 200:
                return response.json()
            assert response.status_code == 404  # not answered yet
            time.sleep(0.1)
        raise AssertionError("no answer")

    asked = rapi.post(
        f"{P}/backups/{backup['id']}/browse-requests",
        json={
            "agent_id": agent_id,
            "encrypted_password_hex": None,
            "path": f"{tree.root}/d0",
            "path_encoded": "",
        },
        headers=headers(secret),
    )
    assert asked.status_code == 202, asked.text
    body = result(asked.headers["location"])
    assert body["event"] == "backup_browsed" and body["succeeded"] is True
    assert [(i["name"], i["mime_type"]) for i in body["items"]] == [
        ("sub0", "application/x-directory"),
        ("sub1", "application/x-directory"),
        ("sub2", "application/x-directory"),
    ]
    top = rapi.post(
        f"{P}/backups/{backup['id']}/browse-requests",
        json={
            "agent_id": agent_id,
            "encrypted_password_hex": None,
            "path": f"{tree.root}/",
            "path_encoded": None,
        },
        headers=headers(secret),
    )
    names = {i["name"]: i for i in result(top.headers["location"])["items"]}
    assert "cache" not in names  # excluded from the backup
    assert names["link-to-d0"]["mime_type"] == "application/x-symlink-file"

    host = rapi.post(
        f"{P}/agents/{agent_id}/browse-requests",
        json={"path": str(tree.root), "path_encoded": None},
        headers=headers(secret),
    )
    assert host.status_code == 202, host.text
    listing = result(host.headers["location"])
    assert listing["event"] == "host_browsed" and listing["succeeded"] is True
    assert {i["name"] for i in listing["items"]} == {
        "cache",
        "d0",
        "d1",
        "d2",
        "d3",
        "d4",
        "empty",
        "link-to-d0",
    }


def test_cleanup_expires_a_backup_past_its_retention(rapi, pg_db, wait_for, tmp_path):
    tree = make_tree(tmp_path / "src", files=10, size=3000)
    secret = token(pg_db)
    backup = _backup(rapi, pg_db, wait_for, secret, tree.root, retention_days=1)
    agent_id = backup["agent_row"].id
    with pg_db.transaction() as session:
        session.execute(
            sa.update(Backup)
            .where(Backup.id == backup["id"])
            .values(ended_time=utcnow() - timedelta(days=2))
        )
    created = rapi.post(
        f"{P}/cleanups",
        json={"agent_id": agent_id, "state": "start_requested"},
        headers=headers(secret),
    )
    assert created.status_code == 201, created.text
    body = wait_for(rapi, created.headers["location"], headers(secret))
    assert body["state"] == "completed", body
    assert body["snapshot_ids"] == [backup["snapshot_id"]]
    assert body["bytes_before"] > body["bytes_after"] > 0
    assert body["errors"]["diagnostics"] is None
    after = rapi.get(f"{P}/backups/{backup['id']}", headers=headers(secret)).json()
    assert after["restorable"] is False
    refused = rapi.post(
        f"{P}/restores",
        json={
            "backup_id": backup["id"],
            "destination_agent_id": agent_id,
            "destination_path": str(tmp_path / "out"),
            "encrypted_password_hex": None,
            "inclusions": [],
            "exclusions": [],
        },
        headers=headers(secret),
    )
    assert refused.status_code == 409
    events = rapi.get(f"{created.headers['location']}/events", headers=headers(secret)).json()
    assert [e["event"] for e in events["events"]] == [
        "cleanup_start_request",
        "cleanup_queued",
        "cleanup_in_progress",
        "cleanup_completed",
    ]
