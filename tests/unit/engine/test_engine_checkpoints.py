"""Checkpoints: what an unfinished backup stored is findable, reused by the next try, kept by
prune while its checkpoint lives and collected once it is gone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from engine_trees import MIB, PASSWORD, describe

from cloudbackup.engine import (
    BackupProgress,
    BackupResult,
    BackupStopped,
    Vault,
    prune,
    restore_snapshot,
    run_backup,
)
from cloudbackup.engine.checkpoints import (
    CheckpointWriter,
    delete_checkpoint,
    list_checkpoints,
    load_resume,
    read_segments,
)
from cloudbackup.engine.selection import PathItem, Selection
from cloudbackup.engine.snapshot import Entry

FILES = 24
SIZE = 2 * MIB  # random, so every byte is a new chunk byte (and stored about as large)


def make_tree(root: Path) -> list[dict[str, str]]:
    root.mkdir(parents=True)
    for n in range(FILES):
        (root / f"f{n:02d}.bin").write_bytes(os.urandom(SIZE))
    return [{"type": "folder", "path": f"{root}/"}]


def back_up(vault: Vault, inclusions: Any, **kwargs: Any) -> BackupResult:
    kwargs.setdefault("on_progress", lambda p: None)
    kwargs.setdefault("should_stop", lambda: False)
    return run_backup(vault, inclusions, [], workers=2, **kwargs)


def stop_at_half(
    vault: Vault, inclusions: Any, key: str, reports: list[BackupProgress]
) -> BackupStopped:
    """Run a checkpointed backup and stop it once half the bytes are read."""
    with pytest.raises(BackupStopped) as stopped:
        back_up(
            vault,
            inclusions,
            checkpoint=key,
            checkpoint_seconds=0.0,
            on_progress=reports.append,
            should_stop=lambda: bool(reports) and reports[-1].bytes_completed >= FILES * SIZE / 2,
        )
    return stopped.value


def plain_bytes_indexed(vault: Vault) -> int:
    """Plaintext bytes of every chunk the vault's index objects list."""
    return sum(b.raw_length for _, f in vault.index_files() for p in f.packs for b in p.blobs)


def test_a_stopped_backup_reports_what_is_in_the_vault_and_checkpoints_it(
    vault: Vault, tmp_path: Path
) -> None:
    inclusions = make_tree(tmp_path / "src")
    reports: list[BackupProgress] = []
    stop_at_half(vault, inclusions, "run-1", reports)

    last = reports[-1]
    # Exactly the bytes the vault's index can find (no file list was written: it stopped).
    assert 0 < last.bytes_backed_up == plain_bytes_indexed(vault) < FILES * SIZE
    recorded = [e for _, s in read_segments(vault) for e in s.entries]
    assert last.files_backed_up == len(recorded) > 0
    assert vault.list_snapshots() == []
    assert set(list_checkpoints(vault)) == {"run-1"}


def test_a_new_run_after_a_stop_stores_only_what_the_stopped_one_had_not(
    vault: Vault, tmp_path: Path
) -> None:
    inclusions = make_tree(tmp_path / "src")
    reports: list[BackupProgress] = []
    stop_at_half(vault, inclusions, "run-1", reports)
    stored_by_stopped = reports[-1].bytes_backed_up

    result = back_up(vault, inclusions, checkpoint="run-2")

    # Nothing is stored twice: the second run adds exactly the rest.
    assert result.new_plain_bytes == FILES * SIZE - stored_by_stopped
    assert result.bytes_backed_up == FILES * SIZE - stored_by_stopped
    assert result.files_searched == FILES
    # Complete, and the checkpoints it resumed from are gone with its own.
    assert list_checkpoints(vault) == {}
    restore_snapshot(vault, result.snapshot_id, tmp_path / "out")
    restored = tmp_path / "out" / str(tmp_path / "src").lstrip("/")
    assert describe(restored) == describe(tmp_path / "src")


def test_a_re_driven_attempt_counts_what_its_earlier_attempt_stored(
    vault: Vault, tmp_path: Path
) -> None:
    inclusions = make_tree(tmp_path / "src")
    reports: list[BackupProgress] = []
    stop_at_half(vault, inclusions, "run-1", reports)

    result = back_up(vault, inclusions, checkpoint="run-1")

    assert result.bytes_backed_up == FILES * SIZE  # both attempts together: what the run stored
    assert result.files_backed_up == FILES
    # This attempt stored only what the first had not.
    assert result.new_plain_bytes == FILES * SIZE - reports[-1].bytes_backed_up


def test_a_running_backups_checkpoint_is_findable_by_another_process(
    vault: Vault, tmp_path: Path
) -> None:
    inclusions = make_tree(tmp_path / "src")
    seen: list[tuple[int, bool]] = []

    def look(progress: BackupProgress) -> None:
        if seen or progress.bytes_completed < FILES * SIZE * 0.6:
            return
        # As a worker started after a kill -9 would: a fresh open of the vault.
        other = Vault(vault.root, password=PASSWORD, create=False)
        resume = load_resume(other, "another-run", Selection(inclusions, []).inclusions)
        index = other.load_index()
        seen.append(
            (len(resume.files), all(c in index for e in resume.files.values() for c in e.chunks))
        )

    back_up(vault, inclusions, checkpoint="run-1", checkpoint_seconds=0.0, on_progress=look)

    assert seen and seen[0][0] >= FILES // 4 and seen[0][1]


def test_without_a_key_a_backup_writes_no_checkpoint(vault: Vault, tmp_path: Path) -> None:
    inclusions = make_tree(tmp_path / "src")
    with pytest.raises(BackupStopped):
        back_up(vault, inclusions, checkpoint_seconds=0.0, should_stop=lambda: True)
    assert list_checkpoints(vault) == {}


def test_prune_keeps_what_a_checkpoint_lists_and_collects_it_once_the_checkpoint_is_gone(
    vault: Vault, tmp_path: Path
) -> None:
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "a.bin").write_bytes(os.urandom(3 * MIB))
    snapshot = back_up(vault, [{"type": "folder", "path": f"{kept}/"}])
    inclusions = make_tree(tmp_path / "src")
    reports: list[BackupProgress] = []
    stop_at_half(vault, inclusions, "run-1", reports)

    listed = {c for _, s in read_segments(vault) for e in s.entries for c in e.chunks}
    assert listed

    prune(vault, repack_below=0)
    # Every chunk a checkpoint lists is kept. (Chunks of the files that were half stored when the
    # run stopped are listed by nothing, and prune may collect them: a pack holding only such
    # chunks goes, which is why the count of packs removed is not asserted here.)
    index = vault.load_index()
    assert all(c in index for c in listed)

    assert delete_checkpoint(vault, "run-1") > 0
    collected = prune(vault, repack_below=0)
    assert collected.packs_removed > 0
    assert collected.bytes_after < 3 * MIB + 2 * MIB  # the snapshot's data and its metadata
    # What the snapshot references is untouched.
    restore_snapshot(vault, snapshot.snapshot_id, tmp_path / "out")
    assert describe(tmp_path / "out" / str(kept).lstrip("/")) == describe(kept)


def file_entry(path: bytes, size: int) -> Entry:
    return Entry(path=path, kind="file", mode=0o644, mtime_ns=1, size=size, inode=7)


def test_resume_reads_its_own_and_same_inclusions_checkpoints_newest_first(vault: Vault) -> None:
    mine = [PathItem(type="folder", path="/data/")]
    other = [PathItem(type="folder", path="/elsewhere/")]
    first = CheckpointWriter(vault, "run-1", mine)
    first.write([file_entry(b"/data/a", 1), file_entry(b"/data/b", 1)], 2, 100)
    again = CheckpointWriter(vault, "run-1", mine)
    again.write([file_entry(b"/data/b", 2)], 3, 150)
    CheckpointWriter(vault, "run-x", other).write([file_entry(b"/elsewhere/c", 1)], 1, 9)
    vault.storage.put("checkpoints/run-1/damaged", b"not sealed")

    own = load_resume(vault, "run-1", mine)
    assert {p: e.size for p, e in own.files.items()} == {b"/data/a": 1, b"/data/b": 2}
    assert (own.files_backed_up, own.bytes_backed_up) == (3, 150)
    other_run = load_resume(vault, "run-2", mine)
    assert set(other_run.files) == {b"/data/a", b"/data/b"}
    assert (other_run.files_backed_up, other_run.bytes_backed_up) == (0, 0)
    with pytest.raises(ValueError, match="checkpoint key"):
        load_resume(vault, "../escape", mine)
