"""Restores: byte-identical trees, no silent overwrites, damaged vaults, stop requests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import msgspec
import pytest
from engine_trees import (
    FAST_KDF,
    MTIME_NS,
    NON_UTF8_NAME,
    PASSWORD,
    BackupFn,
    Tree,
    describe,
)

from cloudbackup.engine import (
    BLOB_CORRUPT,
    BLOB_MISSING,
    FILE_EXISTS,
    INVALID_ENTRY,
    Entry,
    Manifest,
    RestoreProgress,
    RestoreStopped,
    SnapshotNotFound,
    Vault,
    restore_snapshot,
    run_backup,
)
from cloudbackup.engine.packs import ChunkWriter
from cloudbackup.engine.snapshot import encode_frames
from cloudbackup.engine.vault import pack_name


def restored_root(destination: Path, tree: Tree) -> Path:
    return destination / str(tree.root).lstrip("/")


def test_restore_is_identical_to_the_source(
    tree: Tree, vault: Vault, backup: BackupFn, tmp_path: Path
) -> None:
    snapshot_id = backup(tree.inclusions()).snapshot_id
    destination = tmp_path / "restore"

    result = restore_snapshot(vault, snapshot_id, destination)

    assert result.errors == []
    assert (result.files_restored, result.bytes_restored) == (tree.file_count, tree.byte_count)
    expected = describe(tree.root)
    restored = describe(restored_root(destination, tree))
    assert restored == expected
    # Spot checks of what the comparison above covers, so a broken describe() cannot hide it.
    assert restored[b"empty"] == ("dir", 0o700, MTIME_NS)
    assert restored[b"nested/a"][:2] == ("dir", 0o750)
    assert restored[b"nested/a/b/deep.txt"][:3] == ("file", 0o600, MTIME_NS)
    assert restored[b"link-to-dir"] == ("symlink", b"nested/a", MTIME_NS)
    assert restored[b"dangling"][1] == b"/does/not/exist"
    assert b"nested/" + NON_UTF8_NAME in restored
    root_mtime = os.stat(restored_root(destination, tree)).st_mtime_ns
    assert root_mtime == MTIME_NS  # set after its contents were written


def test_restore_in_place(tree: Tree, vault: Vault, backup: BackupFn) -> None:
    snapshot_id = backup(tree.inclusions()).snapshot_id
    expected = describe(tree.root)
    shutil.rmtree(tree.root)

    result = restore_snapshot(vault, snapshot_id, None)

    assert result.errors == []
    assert describe(tree.root) == expected


def test_existing_files_are_kept_unless_overwrite(
    tree: Tree, vault: Vault, backup: BackupFn, tmp_path: Path
) -> None:
    snapshot_id = backup(tree.inclusions()).snapshot_id
    destination = tmp_path / "restore"
    restore_snapshot(vault, snapshot_id, destination)
    edited = restored_root(destination, tree) / "top.txt"
    edited.write_bytes(b"local edit")

    kept = restore_snapshot(vault, snapshot_id, destination)

    assert (kept.files_restored, kept.bytes_restored) == (0, 0)
    assert {e.type for e in kept.errors} == {FILE_EXISTS}
    # Every file and every symlink collides; directories are merged into silently.
    assert len(kept.errors) == tree.file_count + 3
    assert edited.read_bytes() == b"local edit"

    replaced = restore_snapshot(vault, snapshot_id, destination, overwrite=True)

    assert replaced.errors == []
    assert replaced.files_restored == tree.file_count
    assert describe(restored_root(destination, tree)) == describe(tree.root)
    assert not [p for p in restored_root(destination, tree).rglob("*.restore-*")]


def test_a_resumed_restore_takes_what_its_first_attempt_wrote_as_done(
    tree: Tree, vault: Vault, backup: BackupFn, tmp_path: Path
) -> None:
    snapshot_id = backup(tree.inclusions()).snapshot_id
    destination = tmp_path / "restore"
    restore_snapshot(vault, snapshot_id, destination)  # the first attempt, killed at the end
    edited = restored_root(destination, tree) / "top.txt"
    edited.write_bytes(b"local edit")  # changed since: still a conflict
    os.utime(restored_root(destination, tree) / "link-to-dir", ns=(1, 1), follow_symlinks=False)

    resumed = restore_snapshot(vault, snapshot_id, destination, resume=True)

    assert [os.fsdecode(e.path).rsplit("/", 1)[-1] for e in resumed.errors] == ["top.txt"]
    assert {e.type for e in resumed.errors} == {FILE_EXISTS}
    assert resumed.files_restored == tree.file_count - 1
    assert edited.read_bytes() == b"local edit"


def test_restore_from_an_encrypted_vault(tree: Tree, tmp_path: Path) -> None:
    vault = Vault(tmp_path / "secret", password="pw", kdf=FAST_KDF)
    result = run_backup(
        vault, tree.inclusions(), [], on_progress=lambda p: None, should_stop=lambda: False
    )
    destination = tmp_path / "restore"

    restored = restore_snapshot(
        Vault(tmp_path / "secret", password="pw"), result.snapshot_id, destination
    )

    assert restored.errors == []
    assert describe(restored_root(destination, tree)) == describe(tree.root)


def test_select_restores_only_the_chosen_entries(
    tree: Tree, vault: Vault, backup: BackupFn, tmp_path: Path
) -> None:
    snapshot_id = backup(tree.inclusions()).snapshot_id
    nested = tree.path("nested")

    result = restore_snapshot(
        vault,
        snapshot_id,
        tmp_path / "restore",
        select=lambda e: e.path == nested or e.path.startswith(nested + b"/"),
    )

    root = restored_root(tmp_path / "restore", tree)
    assert result.errors == []
    assert result.files_restored == 4  # deep.txt, sibling.bin, copy-of-top.txt, café
    assert sorted(os.listdir(root)) == ["nested"]
    assert describe(root / "nested") == describe(tree.root / "nested")


def test_damaged_and_missing_chunks_are_errors(
    tree: Tree, vault: Vault, backup: BackupFn, tmp_path: Path
) -> None:
    snapshot_id = backup(tree.inclusions()).snapshot_id
    manifest = vault.read_manifest(snapshot_id)
    entries = {e.path: e for e in manifest.entries}
    big = entries[tree.path("big.bin")]
    # Flip one byte in the middle of big.bin's second chunk, inside its pack.
    loc = vault.load_index().get(big.chunks[1])
    assert loc is not None
    pack = vault.root / pack_name(loc.pack)
    damaged = bytearray(pack.read_bytes())
    damaged[loc.offset + loc.length // 2] ^= 0xFF
    pack.write_bytes(bytes(damaged))
    # And a snapshot whose deep.txt names a chunk the vault never had.
    deep = entries[tree.path("nested/a/b/deep.txt")]
    broken = [
        msgspec.structs.replace(e, chunks=(b"\1" * 32,)) if e.path == deep.path else e
        for e in manifest.entries
    ]
    second = vault.allocate()
    vault.write_manifest(
        second, msgspec.structs.replace(manifest, snapshot_id=second, entries=broken)
    )
    destination = tmp_path / "restore"

    result = restore_snapshot(Vault(vault.root, password=PASSWORD), second, destination)

    root = restored_root(destination, tree)
    assert sorted((e.path, e.type) for e in result.errors) == [
        (str(root / "big.bin"), BLOB_CORRUPT),
        (str(root / "nested/a/b/deep.txt"), BLOB_MISSING),
    ]
    assert result.files_restored == tree.file_count - 2
    assert not (root / "big.bin").exists()
    assert not [p.name for p in root.iterdir() if ".restore-" in p.name]


def test_stop_request_raises_and_leaves_no_partial_file(
    tree: Tree, vault: Vault, backup: BackupFn, tmp_path: Path
) -> None:
    snapshot_id = backup(tree.inclusions()).snapshot_id
    progress: list[RestoreProgress] = []
    destination = tmp_path / "restore"

    with pytest.raises(RestoreStopped):
        restore_snapshot(
            vault,
            snapshot_id,
            destination,
            on_progress=progress.append,
            # Stop at the first check: right after big.bin, the first file, was handed over.
            should_stop=lambda: True,
        )

    assert len(progress) == 1
    assert progress[-1].total_bytes == tree.byte_count
    root = restored_root(destination, tree)
    # Whatever was written is whole (files appear complete or not at all); no temp files.
    for path in root.rglob("*"):
        assert ".restore-" not in path.name
        if path.is_file() and not path.is_symlink():
            assert (
                path.read_bytes()
                == tree.files[os.fsencode(path).replace(os.fsencode(destination), b"", 1)]
            )
    assert progress[-1].files_restored <= 1


def test_progress_counts_up_to_the_totals(
    tree: Tree, vault: Vault, backup: BackupFn, tmp_path: Path
) -> None:
    snapshot_id = backup(tree.inclusions()).snapshot_id
    progress: list[RestoreProgress] = []

    restore_snapshot(vault, snapshot_id, tmp_path / "restore", on_progress=progress.append)

    assert len(progress) >= 2  # the first check, then at most every REPORT_SECONDS, the last
    completed = [p.bytes_completed for p in progress]
    assert completed == sorted(completed)
    last = progress[-1]
    assert (last.files_restored, last.total_files) == (tree.file_count, tree.file_count)
    assert last.bytes_restored == last.bytes_completed == last.total_bytes == tree.byte_count


def test_unknown_snapshot(vault: Vault, tmp_path: Path) -> None:
    with pytest.raises(SnapshotNotFound):
        restore_snapshot(vault, 7, tmp_path)


def test_paths_escaping_the_destination_are_refused(vault: Vault, tmp_path: Path) -> None:
    chunks = vault.store_bytes(b"evil")
    snapshot_id = vault.allocate()
    entries = [
        Entry(path=b"/ok", kind="file", mode=0o644, mtime_ns=1, size=4, chunks=chunks),
        Entry(path=b"/a/../../escape", kind="file", mode=0o644, mtime_ns=1, size=4, chunks=chunks),
        Entry(path=b"relative", kind="file", mode=0o644, mtime_ns=1, size=4, chunks=chunks),
    ]
    vault.write_manifest(
        snapshot_id,
        Manifest(
            snapshot_id=snapshot_id, created_ns=1, inclusions=[], exclusions=[], entries=entries
        ),
    )
    destination = tmp_path / "inside" / "restore"

    result = restore_snapshot(vault, snapshot_id, destination)

    assert [e.type for e in result.errors] == [INVALID_ENTRY, INVALID_ENTRY]
    assert (destination / "ok").read_bytes() == b"evil"
    assert sorted(os.listdir(tmp_path)) == ["inside", "vault"]
    assert os.listdir(tmp_path / "inside") == ["restore"]


def test_files_are_placed_without_ever_replacing_one(tmp_path: Path) -> None:
    from cloudbackup.engine import file_ops as restore_module

    (tmp_path / "tmp").write_bytes(b"new")
    (tmp_path / "taken").write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        restore_module.rename_noreplace(
            os.fsencode(tmp_path / "tmp"), os.fsencode(tmp_path / "taken")
        )
    assert (tmp_path / "taken").read_bytes() == b"someone else's"
    assert restore_module.rename_noreplace(
        os.fsencode(tmp_path / "tmp"), os.fsencode(tmp_path / "free")
    )
    assert (tmp_path / "free").read_bytes() == b"new" and not (tmp_path / "tmp").exists()


def test_restore_without_renameat2_falls_back_to_link(
    tree: Tree, vault: Vault, backup: BackupFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cloudbackup.engine import file_ops as restore_module

    monkeypatch.setattr(restore_module, "_renameat2", None)
    snapshot_id = backup(tree.inclusions()).snapshot_id

    result = restore_snapshot(vault, snapshot_id, tmp_path / "restore")

    assert result.errors == []
    assert describe(restored_root(tmp_path / "restore", tree)) == describe(tree.root)


def _forge(vault: Vault, snapshot_id: int, extra: list[Entry]) -> int:
    """What an attacker with write access to the vault's storage can do: store a snapshot whose
    manifest names more than the backup walked (the entries' content is real data)."""
    info = vault.read_info(snapshot_id)
    entries = [*vault.iter_entries(info), *extra]
    writer = ChunkWriter(vault, vault.load_index(), writer=None)
    cutter = vault.new_cutter()
    chunks: list[bytes] = []
    for frame in encode_frames(entries):
        chunks.extend(writer.store(c)[0] for c in cutter.feed(frame))
    chunks.extend(writer.store(c)[0] for c in cutter.finish())
    writer.flush()
    forged = msgspec.structs.replace(
        info, snapshot_id=vault.allocate(), tree=chunks, entry_count=len(entries)
    )
    vault.write_snapshot(forged)
    return forged.snapshot_id


def test_a_manifest_entry_outside_the_inclusions_is_refused(
    tree: Tree, vault: Vault, backup: BackupFn, tmp_path: Path
) -> None:
    snapshot_id = backup(tree.inclusions()).snapshot_id
    real = next(e for e in vault.iter_entries(vault.read_info(snapshot_id)) if e.kind == "file")
    outside = os.fsencode(tmp_path / "cron.d" / "evil")
    forged = _forge(vault, snapshot_id, [msgspec.structs.replace(real, path=outside)])
    shutil.rmtree(tree.root)

    result = restore_snapshot(vault, forged, None)  # in place: where the entries say

    assert not os.path.exists(outside)
    assert [(e.path, e.type) for e in result.errors] == [(os.fsdecode(outside), "invalid_entry")]
    assert "outside the snapshot's inclusions" in result.errors[0].description
    assert describe(tree.root)  # everything the backup walked came back
