"""Restoring many small files cheaply (issue 12): the callbacks run by time, not per file; a
batch's chunks are read in few ranges of their packs; files are written unnamed and only then
named; a folder the restore made is not searched for files already there."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from engine_trees import PASSWORD, BackupFn, Tree, describe

from cloudbackup.engine import RestoreProgress, Vault, file_ops, restore_snapshot
from cloudbackup.engine import restore as restore_module
from cloudbackup.engine.restore_reads import read_chunks

FILES = 300


def small_tree(root: Path, files: int = FILES) -> Tree:
    tree = Tree(root)
    for n in range(files):
        tree.write(f"d{n // 100}/f{n:04d}.txt", f"small file {n}\n".encode() * (n % 7 + 1))
    return tree


def restored(destination: Path, tree: Tree) -> Path:
    return destination / str(tree.root).lstrip("/")


def test_the_callbacks_do_not_run_per_file(
    vault: Vault, backup: BackupFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = small_tree(tmp_path / "src")
    snapshot_id = backup(tree.inclusions()).snapshot_id
    monkeypatch.setattr(restore_module, "REPORT_SECONDS", 3600.0)
    reports: list[RestoreProgress] = []
    stops: list[bool] = []

    def should_stop() -> bool:
        stops.append(True)
        return False

    restore_snapshot(
        vault, snapshot_id, tmp_path / "out", on_progress=reports.append, should_stop=should_stop
    )

    # The first file, a few waits for the writers (every 0.2 s), the final counters.
    assert len(reports) < FILES // 10 and len(stops) == len(reports)
    last = reports[-1]
    assert (last.files_restored, last.bytes_restored) == (FILES, tree.byte_count)


def test_a_batch_of_small_files_is_read_in_few_ranges(
    vault: Vault, backup: BackupFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = small_tree(tmp_path / "src")
    snapshot_id = backup(tree.inclusions()).snapshot_id
    reading = Vault(vault.root, password=PASSWORD, create=False)
    real_get_range = reading.storage.get_range
    ranges: list[tuple[str, int, int]] = []

    def counting(name: str, offset: int, length: int) -> bytes:
        ranges.append((name, offset, length))
        return real_get_range(name, offset, length)

    monkeypatch.setattr(reading.storage, "get_range", counting)
    result = restore_snapshot(reading, snapshot_id, tmp_path / "out")

    assert result.errors == [] and result.files_restored == FILES
    assert describe(restored(tmp_path / "out", tree)) == describe(tree.root)
    # Batches of up to 64 files, one range each (and the snapshot's tree): not one per file.
    assert len(ranges) <= FILES // 64 + 10


def test_no_name_holds_a_file_before_it_is_complete(
    vault: Vault, backup: BackupFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = small_tree(tmp_path / "src", 20)
    snapshot_id = backup(tree.inclusions()).snapshot_id
    folder = restored(tmp_path / "out", tree) / "d0"
    real_write_all = restore_module._write_all
    seen: list[list[str]] = []

    def write_and_look(fd: int, data: bytes) -> None:
        seen.append(sorted(os.listdir(folder)))
        real_write_all(fd, data)

    monkeypatch.setattr(restore_module, "_write_all", write_and_look)
    result = restore_snapshot(vault, snapshot_id, tmp_path / "out", workers=1)

    assert result.errors == [] and len(seen) == 20
    # While each file is written, its folder holds the files before it and nothing else.
    assert seen == [[f"f{n:04d}.txt" for n in range(k)] for k in range(20)]


def test_without_unnamed_files_temp_names_are_used_and_removed(
    vault: Vault, backup: BackupFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = small_tree(tmp_path / "src")
    snapshot_id = backup(tree.inclusions()).snapshot_id
    monkeypatch.setattr(file_ops, "_tmpfile_usable", False)

    result = restore_snapshot(vault, snapshot_id, tmp_path / "out")

    assert result.errors == [] and result.files_restored == FILES
    assert describe(restored(tmp_path / "out", tree)) == describe(tree.root)


def test_overwrite_replaces_files_written_unnamed(
    vault: Vault, backup: BackupFn, tmp_path: Path
) -> None:
    tree = small_tree(tmp_path / "src", 10)
    snapshot_id = backup(tree.inclusions()).snapshot_id
    target = restored(tmp_path / "out", tree) / "d0"
    target.mkdir(parents=True)
    (target / "f0003.txt").write_bytes(b"someone else's")
    os.symlink("/nonexistent", target / "f0004.txt")

    result = restore_snapshot(vault, snapshot_id, tmp_path / "out", overwrite=True)

    assert result.errors == [] and result.files_restored == 10
    assert describe(restored(tmp_path / "out", tree)) == describe(tree.root)


def test_only_folders_there_before_are_searched_for_existing_files(
    vault: Vault, backup: BackupFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = small_tree(tmp_path / "src")
    snapshot_id = backup(tree.inclusions()).snapshot_id
    existing = restored(tmp_path / "out", tree) / "d1"
    existing.mkdir(parents=True)
    (existing / "f0150.txt").write_bytes(b"someone else's")
    real_lexists = restore_module.lexists_at
    looked_up: list[bytes] = []

    def counting(parent: int, name: bytes) -> bool:
        looked_up.append(name)
        return real_lexists(parent, name)

    monkeypatch.setattr(restore_module, "lexists_at", counting)
    result = restore_snapshot(vault, snapshot_id, tmp_path / "out")

    # d1 was there: its 100 files are looked up (one is taken); d0 and d2 are new.
    assert sorted(looked_up) == [b"f%04d.txt" % n for n in range(100, 200)]
    assert [(os.path.basename(e.path), e.type) for e in result.errors] == [
        ("f0150.txt", "file_exists")
    ]
    assert (existing / "f0150.txt").read_bytes() == b"someone else's"


def test_grouped_reads_report_missing_and_damaged_chunks_one_by_one(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good, damaged = vault.store_bytes(b"good" * 10), vault.store_bytes(b"damaged" * 10)
    real_decode = vault.decode_chunk

    def decode(chunk_id: bytes, stored: bytes, compressed: bool) -> Any:
        if chunk_id == damaged[0]:
            stored = b"\0" * len(stored)
        return real_decode(chunk_id, stored, compressed)

    monkeypatch.setattr(vault, "decode_chunk", decode)
    found = read_chunks(vault, [good[0], b"\1" * 32, damaged[0], good[0]])

    assert found[good[0]] == b"good" * 10
    missing, corrupt = found[b"\1" * 32], found[damaged[0]]
    assert not isinstance(missing, bytes) and missing.kind == "missing"
    assert not isinstance(corrupt, bytes) and corrupt.kind == "corrupt"
