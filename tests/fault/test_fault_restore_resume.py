"""Resumable restores through real workers: a restore re-driven after `kill -9` of its worker keeps
the files the killed attempt finished instead of writing them again, and reports the run's true
totals."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from cloudbackup.store.tables import Restore
from factories.api import headers, start_backup, start_restore, token
from factories.trees import digests, make_tree

pytestmark = pytest.mark.slow

MIB = 1024 * 1024


def _final_files(root: Path) -> dict[Path, int]:
    """Inode of every file under its final name (temp names left out): a file written again is
    a new inode."""
    return {
        p: p.lstat().st_ino
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and ".restore-" not in p.name
    }


def test_a_restore_redriven_after_kill_9_at_half_writes_little_again_and_completes(stack, tmp_path):
    # 192 MiB written at 24 MiB/s: about 8 s of restoring.
    tree = make_tree(tmp_path / "src", files=10, big_files=24, big_size=8 * MIB)
    config = stack.configuration(tree.root)
    doomed = stack.worker("doomed", CLOUDBACKUP_RESTORE_MAX_BPS=str(24 * MIB))
    stack.beat()
    secret = token(stack.db)
    out = tmp_path / "out"
    with stack.api() as api:
        backup_id = start_backup(api, secret, config.id).json()["id"]
        assert stack.wait(backup_id, timeout=90).state == "completed", stack.logs()
        # Overwrite: before, every file of a re-driven attempt was written again.
        created = start_restore(api, secret, backup_id, config.agent_id, out, overwrite_files=True)
        assert created.status_code == 201, created.text
        restore_id = created.json()["id"]
        stack.wait(
            restore_id,
            lambda r: r.state == "in_progress" and r.bytes_restored >= tree.bytes / 2,
            timeout=90,
            what="half of its bytes restored",
            table=Restore,
        )
        doomed.kill(signal.SIGKILL)
        killed = stack.restore(restore_id)
        assert killed.state == "in_progress"
        finished = _final_files(out)
        assert finished

        stack.worker("rescuer", CLOUDBACKUP_RESTORE_MAX_BPS=str(24 * MIB))
        final = stack.wait(restore_id, timeout=120, table=Restore)
        shown = api.get(f"/v2/110011/restores/{restore_id}", headers=headers(secret)).json()

    assert final.state == "completed", stack.logs()
    assert final.attempts == 2
    after = _final_files(out)
    kept = [p for p, inode in finished.items() if after.get(p) == inode]
    written_again = sum(p.stat().st_size for p in after) - sum(p.stat().st_size for p in kept)
    assert written_again <= 0.6 * tree.bytes, (written_again, tree.bytes)
    # The counters tell what the run restored over both attempts, each file once.
    assert (shown["files_restored"], shown["bytes_restored"]) == (tree.files, tree.bytes)
    # Byte-identical, and nothing the killed attempt had half-written is left behind.
    restored = out / str(tree.root).lstrip("/")
    expected = {k: v for k, v in digests(tree.root).items() if not k.startswith("cache")}
    assert digests(restored) == expected
