"""Resumable backups through real workers: a run re-driven after `kill -9` and a new run after a
stop reuse what was already stored (checkpoints) instead of storing it again."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from cloudbackup.engine import Vault, open_vault, restore_snapshot
from cloudbackup.engine.checkpoints import list_checkpoints
from factories.api import headers, start_backup, token
from factories.trees import Tree, digests, make_tree

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
RESUMABLE = {
    "CLOUDBACKUP_BACKUP_MAX_BPS": str(24 * MIB),
    "CLOUDBACKUP_BACKUP_CHECKPOINT_SECONDS": "0.25",
}


def _stored_bytes(vault: Vault) -> int:
    """Bytes of every pack in the vault, indexed or not: what has been stored so far."""
    return sum(vault.pack_sizes().values())


def _indexed_plain_bytes(vault: Vault) -> int:
    return sum(b.raw_length for _, f in vault.index_files() for p in f.packs for b in p.blobs)


def _restores_byte_identical(vault: Vault, snapshot_id: int, tree: Tree, out: Path) -> None:
    restore_snapshot(vault, snapshot_id, out)
    restored = out / str(tree.root).lstrip("/")
    expected = {k: v for k, v in digests(tree.root).items() if not k.startswith("cache")}
    assert digests(restored) == expected


def test_a_run_redriven_after_kill_9_at_half_stores_little_again_and_completes(stack, tmp_path):
    # 192 MiB of random data read at 24 MiB/s: about 8 s of storing.
    tree = make_tree(tmp_path / "src", files=10, big_files=24, big_size=8 * MIB)
    config = stack.configuration(tree.root)
    doomed = stack.worker("doomed", **RESUMABLE)
    stack.beat()
    secret = token(stack.db)
    with stack.api() as api:
        backup_id = start_backup(api, secret, config.id).json()["id"]
        stack.wait(
            backup_id,
            lambda b: b.state == "in_progress" and b.bytes_backed_up >= tree.unique_bytes / 2,
            timeout=90,
            what="half of its bytes stored",
        )
        doomed.kill(signal.SIGKILL)
        killed = stack.backup(backup_id)
        assert killed.state == "in_progress"
        vault = open_vault(stack.settings, killed.vault_id, create=False)
        stored_before = _stored_bytes(vault)

        stack.worker("rescuer", CLOUDBACKUP_BACKUP_CHECKPOINT_SECONDS="0.25")
        final = stack.wait(backup_id, timeout=120)
        shown = api.get(f"/v2/110011/backups/{backup_id}", headers=headers(secret)).json()

    assert final.state == "completed", stack.logs()
    assert final.attempts == 2
    stored_again = _stored_bytes(vault) - stored_before
    assert stored_again <= 0.6 * tree.unique_bytes, (stored_again, tree.unique_bytes)
    # The counters tell what the run stored over both attempts, each byte once.
    assert shown["bytes_backed_up"] == tree.unique_bytes
    assert shown["files_searched"] == tree.files
    assert vault.list_snapshots() == [final.snapshot_id]
    assert list_checkpoints(vault) == {}
    _restores_byte_identical(vault, final.snapshot_id, tree, tmp_path / "restored")


def test_a_stopped_run_reports_what_it_stored_and_the_next_run_stores_only_the_rest(
    stack, tmp_path
):
    tree = make_tree(tmp_path / "src", files=10, big_files=12, big_size=8 * MIB)
    config = stack.configuration(tree.root)
    stack.worker("worker", **RESUMABLE)
    secret = token(stack.db)
    patch = headers(secret, **{"Content-Type": "application/json-patch+json"})
    with stack.api() as api:
        first = start_backup(api, secret, config.id).json()["id"]
        stack.wait(
            first,
            lambda b: b.state == "in_progress" and b.bytes_backed_up >= tree.unique_bytes * 0.4,
            timeout=90,
            what="40% of its bytes stored",
        )
        stop = api.patch(
            f"/v2/110011/backups/{first}",
            json=[{"op": "replace", "path": "/state", "value": "stop_requested"}],
            headers=patch,
        )
        assert stop.status_code == 204, stop.text
        stopped = stack.wait(first, timeout=30)
        assert stopped.state == "stopped", stack.logs()
        vault = open_vault(stack.settings, stopped.vault_id, create=False)
        # What it says it stored is what the vault holds (and can find): no more, no less.
        assert 0 < stopped.bytes_backed_up == _indexed_plain_bytes(vault) < tree.unique_bytes
        assert stopped.files_backed_up > 0
        stored_before = _stored_bytes(vault)

        second = start_backup(api, secret, config.id)
        assert second.status_code == 201, second.text
        done = stack.wait(second.json()["id"], timeout=90)

    assert done.state == "completed", stack.logs()
    assert done.bytes_backed_up == tree.unique_bytes - stopped.bytes_backed_up
    stored_now = _stored_bytes(vault) - stored_before
    assert stored_now <= tree.unique_bytes - stopped.bytes_backed_up + 2 * MIB  # + its file list
    assert list_checkpoints(vault) == {}
    _restores_byte_identical(vault, done.snapshot_id, tree, tmp_path / "restored")
