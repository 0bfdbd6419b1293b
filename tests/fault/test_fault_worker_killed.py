"""Fault 1: `kill -9` of the worker in the middle of a backup.

The run's heartbeat goes stale, the sweeper (real `celery beat`) re-publishes it, a new worker
takes it over and completes it. It is never left `in_progress`, and the vault holds exactly the
one snapshot the backup row names: the killed run left none behind, not even half of one.
"""

from __future__ import annotations

import signal

import pytest

from cloudbackup.engine import open_vault, restore_snapshot
from factories.api import headers, start_backup, token
from factories.trees import digests, make_tree

pytestmark = pytest.mark.slow


def test_a_worker_killed_mid_backup_is_redriven_and_the_backup_completes(stack, tmp_path):
    # 24 MiB read at 8 MiB/s: about 3 s of work, long enough to kill the worker in the middle.
    tree = make_tree(tmp_path / "src", files=10, big_files=3, big_size=8 * 1024 * 1024)
    config = stack.configuration(tree.root)
    slow = {"CLOUDBACKUP_BACKUP_MAX_BPS": str(8 * 1024 * 1024)}
    first = stack.worker("doomed", **slow)
    stack.beat()
    secret = token(stack.db)
    with stack.api() as api:
        created = start_backup(api, secret, config.id)
        assert created.status_code == 201, created.text
        backup_id = created.json()["id"]

        stack.wait(
            backup_id,
            lambda b: b.state == "in_progress" and 0 < b.bytes_backed_up < tree.unique_bytes,
            timeout=60,
            what="the middle of its run",
        )
        first.kill(signal.SIGKILL)  # the whole process group: main process and pool child
        killed = stack.backup(backup_id)
        assert killed.state == "in_progress"

        stack.worker("rescuer", **slow)
        final = stack.wait(backup_id, timeout=120)
        shown = api.get(f"/v2/110011/backups/{backup_id}", headers=headers(secret)).json()

    assert final.state == "completed", stack.logs()
    assert final.attempts == 2  # one take-over after the kill
    assert shown["state"] == "completed" and shown["restorable"] is True
    assert shown["files_searched"] == tree.files
    events = stack.events(backup_id)
    assert events.count("backup_completed") == 1 and "backup_failed" not in events

    # No half-visible snapshot: the vault lists exactly the snapshot of the completed run, and it
    # restores byte for byte.
    vault = open_vault(stack.settings, final.vault_id, create=False)
    assert vault.list_snapshots() == [final.snapshot_id]
    restore_snapshot(vault, final.snapshot_id, tmp_path / "restored")
    restored = tmp_path / "restored" / str(tree.root).lstrip("/")
    expected = {k: v for k, v in digests(tree.root).items() if not k.startswith("cache")}
    assert digests(restored) == expected


def test_a_run_killed_too_often_ends_failed_with_a_reason(stack, tmp_path):
    tree = make_tree(tmp_path / "src", files=10, big_files=3, big_size=8 * 1024 * 1024)
    config = stack.configuration(tree.root)
    slow = {"CLOUDBACKUP_BACKUP_MAX_BPS": str(4 * 1024 * 1024), "CLOUDBACKUP_MAX_ATTEMPTS": "2"}
    stack.env.update(CLOUDBACKUP_MAX_ATTEMPTS="2")
    stack.beat()
    secret = token(stack.db)
    with stack.api() as api:
        backup_id = start_backup(api, secret, config.id).json()["id"]
        for attempt in (1, 2):
            worker = stack.worker(f"doomed{attempt}", **slow)
            stack.wait(
                backup_id,
                lambda b, n=attempt: b.state == "in_progress" and b.attempts == n,
                timeout=60,
                what=f"attempt {attempt} running",
            )
            worker.kill(signal.SIGKILL)
        stack.worker("last", **slow)
        final = stack.wait(backup_id, timeout=120)

    assert final.state == "failed", stack.logs()
    assert final.errors_reason == "backup_failed"
    assert "stopped responding 2 times" in final.errors_diagnostics
    assert final.active_manual_lock is None  # the configuration can be started again
    vault = open_vault(stack.settings, final.vault_id, create=False)
    assert vault.list_snapshots() == []
