"""Start a backup through the API and let a real Celery worker run it (PostgreSQL + Redis)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cloudbackup.domain.restores import locate_snapshot
from cloudbackup.engine import restore_snapshot
from factories import rows
from factories.api import headers, start_backup, token
from factories.trees import digests, make_tree

pytestmark = pytest.mark.services


def _config_for(pg_db, root: Path, *, exclude_cache: bool = True, extra_inclusions=()):
    agent = rows.agent(pg_db)
    inclusions = [{"type": "folder", "path": f"{root}/"}, *extra_inclusions]
    exclusions = [{"type": "folder", "path": f"{root}/cache/"}] if exclude_cache else []
    return agent, rows.configuration(pg_db, agent, inclusions=inclusions, exclusions=exclusions)


def _events(api, secret, backup_id):
    r = api.get(f"/v2/110011/backups/{backup_id}/events", headers=headers(secret))
    assert r.status_code == 200
    return [e["event"] for e in r.json()["events"] if e["event"] != "backup_progress"]


def test_backup_runs_to_completed_with_true_counters(
    api, pg_db, worker, wait_for, tmp_path, integration_settings
):
    tree = make_tree(tmp_path / "src", files=60, size=20_000)
    _, config = _config_for(pg_db, tree.root)
    secret = token(pg_db)

    created = start_backup(api, secret, config.id)
    assert created.status_code == 201, created.text
    body = wait_for(api, created.headers["location"], headers(secret))

    assert body["state"] == "completed", body
    assert body["files_searched"] == tree.files
    assert body["bytes_searched"] == tree.bytes
    assert body["files_backed_up"] == tree.unique_files
    assert body["bytes_backed_up"] == tree.unique_bytes
    assert body["bandwidth_avg_bps"] > 0
    assert body["restorable"] is True
    assert isinstance(body["snapshot_id"], int)
    assert body["bytes_in_db"] > 0
    assert body["started_time"] and body["ended_time"]
    assert _events(api, secret, body["id"]) == [
        "backup_start_request",
        "backup_queued",
        "backup_preparing",
        "backup_in_progress",
        "backup_completed",
    ]


def test_second_run_of_unchanged_tree_stores_nothing_and_restores_byte_identical(
    api, pg_db, worker, wait_for, tmp_path, integration_settings
):
    tree = make_tree(tmp_path / "src", files=30, size=50_000, big_files=1, big_size=3 * 1024 * 1024)
    _, config = _config_for(pg_db, tree.root)
    secret = token(pg_db)
    first = wait_for(api, start_backup(api, secret, config.id).headers["location"], headers(secret))
    second = wait_for(
        api, start_backup(api, secret, config.id).headers["location"], headers(secret)
    )

    assert first["state"] == second["state"] == "completed"
    assert second["files_searched"] == tree.files and second["bytes_searched"] == tree.bytes
    assert second["files_backed_up"] == 0
    assert second["bytes_backed_up"] == 0
    assert second["snapshot_id"] != first["snapshot_id"]

    target = locate_snapshot(pg_db, integration_settings, first["id"])
    result = restore_snapshot(target.vault, target.snapshot_id, tmp_path / "restored")
    assert result.errors == []
    restored_root = tmp_path / "restored" / str(tree.root).lstrip("/")
    expected = {k: v for k, v in digests(tree.root).items() if not k.startswith("cache")}
    assert digests(restored_root) == expected


def test_missing_path_ends_completed_with_errors_and_lists_them(
    api, pg_db, worker, wait_for, tmp_path
):
    tree = make_tree(tmp_path / "src", files=5)
    missing = tmp_path / "not-there"
    _, config = _config_for(
        pg_db, tree.root, extra_inclusions=[{"type": "folder", "path": f"{missing}/"}]
    )
    secret = token(pg_db)
    body = wait_for(api, start_backup(api, secret, config.id).headers["location"], headers(secret))

    assert body["state"] == "completed_with_errors"
    assert body["restorable"] is True
    assert body["errors"]["count"] == 1
    assert body["errors"]["reason"] == "unable_to_process_some_files"
    assert (
        body["errors"]["diagnostics"] == "Some files could not be backed up. Partial list follows."
    )
    assert body["files_searched"] == tree.files
    errors = api.get(f"/v2/110011/backups/{body['id']}/errors", headers=headers(secret)).json()
    assert errors["count"] == 1
    assert [(e["index"], e["type"]) for e in errors["list"]] == [(0, "inclusion_missing")]
    assert errors["list"][0]["path"].rstrip("/") == str(missing)
    assert errors["list"][0]["description"] == "The item did not exist when the backup started."
    assert errors["links"] == [
        {"href": f"http://testserver.local/v2/110011/backups/{body['id']}/errors", "rel": "self"}
    ]
    assert _events(api, secret, body["id"])[-1] == "backup_completed"


def test_counters_grow_while_running_then_stop_ends_it_stopped(
    api, pg_db, worker, wait_for, tmp_path
):
    # 24 MiB at the worker's 8 MiB/s cap: about 3 s of work to watch.
    tree = make_tree(tmp_path / "src", files=10, big_files=3, big_size=8 * 1024 * 1024)
    _, config = _config_for(pg_db, tree.root)
    secret = token(pg_db)
    url = start_backup(api, secret, config.id).headers["location"]

    seen = wait_for(
        api,
        url,
        headers(secret),
        predicate=lambda b: (
            b["state"] == "in_progress" and 0 < b["bytes_backed_up"] < tree.unique_bytes
        ),
        interval=0.05,
    )
    assert seen["started_time"] is not None and seen["ended_time"] is None
    later = wait_for(
        api,
        url,
        headers(secret),
        predicate=lambda b: b["bytes_backed_up"] > seen["bytes_backed_up"],
    )
    assert later["state"] == "in_progress"

    # A second manual start while this one runs is refused, and nothing is recorded.
    before = len(api.get("/v2/110011/backups", headers=headers(secret)).json()["backups"])
    conflict = start_backup(api, secret, config.id)
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["message"]
    assert len(api.get("/v2/110011/backups", headers=headers(secret)).json()["backups"]) == before

    stop = api.patch(
        url,
        json=[{"op": "replace", "path": "/state", "value": "stop_requested"}],
        headers=headers(secret, **{"Content-Type": "application/json-patch+json"}),
    )
    assert stop.status_code == 204, stop.text
    asked = time.monotonic()
    final = wait_for(api, url, headers(secret), timeout=10)
    assert final["state"] == "stopped"
    assert time.monotonic() - asked < 2.0
    assert final["restorable"] is False and final["snapshot_id"] is None
    assert _events(api, secret, final["id"])[-2:] == ["backup_stop_request", "backup_stopped"]

    again = api.patch(
        url,
        json=[{"op": "replace", "path": "/state", "value": "stop_requested"}],
        headers=headers(secret, **{"Content-Type": "application/json-patch+json"}),
    )
    assert again.status_code == 409
    assert again.json()["message"] == (
        "Modifying a backup that is already in a state of ['completed', 'completed_with_errors', "
        "'failed', 'stopped', 'skipped', 'missed'] is not allowed."
    )


def test_duplicate_delivery_runs_the_backup_once(
    api, pg_db, worker, wait_for, tmp_path, dispatcher
):
    tree = make_tree(tmp_path / "src", files=20)
    _, config = _config_for(pg_db, tree.root)
    secret = token(pg_db)
    created = start_backup(api, secret, config.id).json()
    for _ in range(3):
        assert dispatcher.publish("backup", created["id"])
    body = wait_for(api, f"/v2/110011/backups/{created['id']}", headers(secret))
    time.sleep(1.0)  # give the duplicates time to arrive and be ignored
    events = _events(api, secret, body["id"])
    assert events.count("backup_queued") == 1
    assert events.count("backup_completed") == 1
    assert body["state"] == "completed"


def test_scheduled_start_with_agent_header_runs(api, pg_db, worker, wait_for, tmp_path):
    tree = make_tree(tmp_path / "src", files=3)
    agent, config = _config_for(pg_db, tree.root)
    secret = token(pg_db)
    response = api.post(
        "/v2/110011/backups",
        json={"configuration_id": config.id, "state": "start_scheduled"},
        headers=headers(secret, **{"X-Agent-Id": agent.id}),
    )
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "start_scheduled"
    assert wait_for(api, response.headers["location"], headers(secret))["state"] == "completed"
