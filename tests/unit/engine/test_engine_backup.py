"""Backup runs: counters, deduplication, per-file errors, progress, stop, throttle, concurrency."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from engine_trees import (
    FAST_KDF,
    MIB,
    NON_UTF8_NAME,
    PASSWORD,
    BackupFn,
    Tree,
    build_tree,
    chunk_ids,
    content_ids,
    file_bytes,
    tmp_leftovers,
)

from cloudbackup.engine import (
    FILE_OR_FOLDER_MISSING,
    FILE_UNREADABLE,
    INCLUSION_MISSING,
    BackupProgress,
    BackupResult,
    BackupStopped,
    FileError,
    Vault,
    run_backup,
)
from cloudbackup.engine import backup as backup_module


def locks_in(vault: Vault) -> list[str]:
    folder = vault.root / "locks"
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_first_backup_counts_and_stores_every_distinct_content(
    tree: Tree, vault: Vault, backup: BackupFn
) -> None:
    result = backup(tree.inclusions())

    # 7 regular files (symlinks and directories are not files); copy-of-top.txt repeats top.txt
    # and the empty file has no content to store.
    assert (result.files_searched, result.bytes_searched) == (7, 3_196_876)
    assert (result.files_backed_up, result.bytes_backed_up) == (5, 3_196_870)
    assert result.files_searched == tree.file_count
    assert result.bytes_searched == tree.byte_count
    assert result.bytes_backed_up == sum(len(c) for c in tree.unique_contents)
    assert result.errors == []
    assert result.snapshot_id == 1
    assert vault.list_snapshots() == [1]
    info = vault.read_info(1)
    manifest_size = (vault.root / "snapshots" / "1.manifest").stat().st_size
    assert result.bytes_in_db == manifest_size + info.tree_size > 0
    # Every distinct content's chunks, plus the chunks of the snapshot's own file list.
    expected = {c for content in tree.unique_contents for c in content_ids(vault, content)}
    assert chunk_ids(vault) == expected | set(info.tree)
    assert result.duration_seconds > 0
    assert locks_in(vault) == []  # the backup's lock is released


def test_manifest_describes_every_entry(tree: Tree, vault: Vault, backup: BackupFn) -> None:
    result = backup(tree.inclusions())
    entries = {e.path: e for e in vault.read_manifest(result.snapshot_id).entries}

    for path, content in tree.files.items():
        assert entries[path].kind == "file"
        assert entries[path].chunks == content_ids(vault, content)
        assert entries[path].size == len(content)
        assert file_bytes(vault, entries[path]) == content
        assert entries[path].inode == os.stat(path).st_ino
    assert entries[tree.path(b"nested/" + NON_UTF8_NAME)].kind == "file"
    assert entries[tree.path("empty")].kind == "dir"
    assert entries[tree.path("link-to-dir")].target == b"nested/a"
    assert entries[tree.path("nested/a/b/deep.txt")].mode == 0o600


def test_second_run_of_an_unchanged_tree_stores_nothing(
    tree: Tree, vault: Vault, backup: BackupFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup(tree.inclusions())
    chunks = chunk_ids(vault)
    # Unchanged files (same size, mtime and inode) must not even be opened.
    monkeypatch.setattr(
        backup_module, "_open_regular", lambda path: pytest.fail(f"{path!r} read again")
    )

    again = backup(tree.inclusions())

    assert (again.files_searched, again.bytes_searched) == (7, 3_196_876)
    assert (again.files_backed_up, again.bytes_backed_up) == (0, 0)
    assert again.snapshot_id == 2
    assert vault.list_snapshots() == [1, 2]
    assert chunk_ids(vault) == chunks  # the same file list: its chunks deduplicate too
    first, second = vault.read_manifest(1), vault.read_manifest(2)
    assert [e.chunks for e in first.entries] == [e.chunks for e in second.entries]


def test_a_file_is_read_again_when_mtime_or_inode_differ(
    tree: Tree, vault: Vault, backup: BackupFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup(tree.inclusions())
    touched = tree.path("nested/a/sibling.bin")
    os.utime(touched, ns=(5, 5))
    replaced = tree.path("top.txt")
    # Same size and mtime, new inode: replaced by rename, as editors and package managers do.
    st = os.stat(replaced)
    with open(replaced + b".new", "wb") as f:
        f.write(b"HELLO\n")
    os.utime(replaced + b".new", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(replaced + b".new", replaced)
    opened: list[bytes] = []
    real_open = backup_module._open_regular

    def spy(path: bytes, *args: Any) -> Any:
        opened.append(path)
        return real_open(path, *args)

    monkeypatch.setattr(backup_module, "_open_regular", spy)
    result = backup(tree.inclusions())

    assert sorted(opened) == sorted([touched, replaced])
    assert (result.files_backed_up, result.bytes_backed_up) == (1, 6)  # sibling.bin is known
    entries = {e.path: e for e in vault.read_manifest(result.snapshot_id).entries}
    assert file_bytes(vault, entries[replaced]) == b"HELLO\n"
    assert entries[touched].mtime_ns == 5


def test_modifying_one_file_stores_exactly_that_file(
    tree: Tree, vault: Vault, backup: BackupFn
) -> None:
    backup(tree.inclusions())
    tree.write("nested/a/b/deep.txt", b"changed content, longer than before " * 50)

    result = backup(tree.inclusions())

    assert (result.files_backed_up, result.bytes_backed_up) == (1, 36 * 50)
    entry = next(
        e
        for e in vault.read_manifest(result.snapshot_id).entries
        if e.path == tree.path("nested/a/b/deep.txt")
    )
    assert file_bytes(vault, entry) == b"changed content, longer than before " * 50


def test_missing_inclusion_is_an_error_and_the_rest_is_backed_up(
    tree: Tree, vault: Vault, backup: BackupFn
) -> None:
    missing = f"{tree.root.parent}/gone.txt"
    result = backup([*tree.inclusions(), {"type": "file", "path": missing}])

    assert result.errors == [
        FileError(
            path=missing,
            type=INCLUSION_MISSING,
            code=errno.ENOENT,
            description="No such file or directory",
        )
    ]
    assert (result.files_searched, result.files_backed_up) == (7, 5)
    assert vault.read_manifest(result.snapshot_id).errors == result.errors


def test_exclusions_are_left_out(tree: Tree, backup: BackupFn) -> None:
    result = backup(
        tree.inclusions(),
        [
            {"type": "file", "path": os.fsdecode(tree.path("big.bin"))},
            {"type": "folder", "path": os.fsdecode(tree.path("nested/a")) + "/"},
        ],
    )
    # Left: top.txt, zero and the non-UTF-8 file.
    assert (result.files_searched, result.bytes_searched) == (3, 6 + 0 + 13)


def test_a_vault_inside_the_inclusion_is_not_backed_up(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "root", big_size=10)
    vault = Vault(tmp_path / "root" / "vault", password=PASSWORD, kdf=FAST_KDF)
    for _ in range(2):
        result = run_backup(
            vault, tree.inclusions(), [], on_progress=lambda p: None, should_stop=lambda: False
        )
        assert result.files_searched == 7
    paths = [e.path for e in vault.read_manifest(2).entries]
    assert not any(p.startswith(os.fsencode(vault.root)) for p in paths)


def test_file_vanished_between_listing_and_reading(
    tree: Tree, vault: Vault, backup: BackupFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tree.path("nested/a/sibling.bin")
    real_open = backup_module._open_regular

    def open_then_delete_a_sibling(path: bytes, *args: Any) -> Any:
        # deep.txt is read after nested/a was listed, before sibling.bin is opened.
        if path == tree.path("nested/a/b/deep.txt"):
            os.unlink(gone)
        return real_open(path, *args)

    monkeypatch.setattr(backup_module, "_open_regular", open_then_delete_a_sibling)
    result = backup(tree.inclusions())

    assert result.files_searched == 6  # listed, but gone before it could be looked at
    assert [(e.path, e.type, e.code) for e in result.errors] == [
        (os.fsdecode(gone), FILE_OR_FOLDER_MISSING, errno.ENOENT)
    ]
    assert result.files_backed_up == 4
    paths = {e.path for e in vault.read_manifest(result.snapshot_id).entries}
    assert gone not in paths
    assert tree.path("big.bin") in paths


def test_unreadable_file_is_an_error(
    tree: Tree, backup: BackupFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root ignores file modes, so refuse the open the way the kernel would for another user.
    denied = tree.path(b"nested/" + NON_UTF8_NAME)
    real_open = os.open

    def fake_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        # Files are opened by name in their folder's descriptor.
        if path == os.path.basename(denied):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(backup_module.os, "open", fake_open)
    result = backup(tree.inclusions())

    assert result.errors == [
        FileError(
            path=f"{tree.root}/nested/caf\\xe9.txt",  # the undecodable byte spelled out
            type=FILE_UNREADABLE,
            code=errno.EACCES,
            description="Permission denied",
        )
    ]
    assert result.files_backed_up == 4


def test_file_replaced_by_a_symlink_is_not_followed(
    tree: Tree, backup: BackupFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = tree.path("top.txt")
    real_open = backup_module._open_regular

    def swap_then_open(path: bytes, *args: Any) -> Any:
        if path == victim:
            os.unlink(victim)
            os.symlink("/etc/passwd", victim)
        return real_open(path, *args)

    monkeypatch.setattr(backup_module, "_open_regular", swap_then_open)
    result = backup(tree.inclusions())
    assert [(e.path, e.type) for e in result.errors] == [(os.fsdecode(victim), FILE_UNREADABLE)]


def test_file_changing_while_read_is_stored_as_the_bytes_read(
    tree: Tree, vault: Vault, backup: BackupFn
) -> None:
    big = tree.path("big.bin")
    original = tree.files[big]
    replacement = os.urandom(len(original))
    changed = False

    def on_progress(progress: BackupProgress) -> None:
        nonlocal changed
        # After big.bin's first block (it is the first file in name order), rewrite it.
        if not changed and 0 < progress.bytes_completed < len(replacement):
            with open(big, "r+b") as f:
                f.write(replacement)
            changed = True

    result = backup(tree.inclusions(), on_progress=on_progress)

    assert changed
    entry = next(e for e in vault.read_manifest(result.snapshot_id).entries if e.path == big)
    # Each chunk is stored under the hash of the bytes actually read, so what is restored is
    # exactly what was read: never bytes under a stale id.
    assert file_bytes(vault, entry) == original[:MIB] + replacement[MIB:]
    assert all(vault.sealer.chunk_id(vault.read_chunk(c)) == c for c in entry.chunks)


def test_progress_is_reported_during_a_large_file(tree: Tree, backup: BackupFn) -> None:
    progress: list[BackupProgress] = []
    result = backup(tree.inclusions(), progress=progress)

    big_size = len(tree.files[tree.path("big.bin")])
    completed = [p.bytes_completed for p in progress]
    assert completed == sorted(completed)  # never goes backwards
    assert all(p.bytes_completed <= p.total_bytes for p in progress)
    # big.bin is the first file stored: its 4 blocks show up as distinct partial values.
    inside_big = {c for c in completed if 0 < c < big_size}
    assert len(inside_big) >= 3
    last = progress[-1]
    assert (last.files_searched, last.bytes_searched) == (7, result.bytes_searched)
    assert last.bytes_completed == last.total_bytes == result.bytes_searched
    assert (last.files_backed_up, last.bytes_backed_up) == (5, result.bytes_backed_up)
    assert last.errors_count == 0


def test_phases_are_announced_before_their_work(tree: Tree, backup: BackupFn) -> None:
    events: list[str] = []
    backup(
        tree.inclusions(),
        on_phase=events.append,
        on_progress=lambda p: events.append(f"progress {p.bytes_completed}"),
    )
    store_starts = events.index("in_progress")
    assert events[0] == "preparing"
    assert events.count("preparing") == events.count("in_progress") == 1
    # Scan reports (nothing completed yet) come between the two, store reports after: the
    # first one that completed anything is after big.bin's first block.
    assert set(events[1:store_starts]) == {"progress 0"}
    assert (
        next(e for e in events[store_starts:] if e.startswith("progress ") and e != "progress 0")
        == "progress 1048576"
    )


# The tree gives 28 checks: 9 while scanning (its 8 folders and links: files are only counted,
# and once at its end), 15 entries while storing, one after each block read but a file's last
# (big.bin's first 3: the entry's own check follows the last), and a final one once everything
# is stored. 28 is the very last one.
@pytest.mark.parametrize("stop_after", [1, 11, 15, 28])
def test_stop_request_raises_and_leaves_no_snapshot(
    tree: Tree, vault: Vault, backup: BackupFn, stop_after: int
) -> None:
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return calls >= stop_after

    with pytest.raises(BackupStopped):
        backup(tree.inclusions(), should_stop=should_stop)
    assert calls == stop_after
    assert vault.list_snapshots() == []
    assert not list((vault.root / "snapshots").glob("*.manifest"))
    assert tmp_leftovers(vault.root) == []
    assert locks_in(vault) == []


def test_the_stop_checks_are_counted_right(tree: Tree, backup: BackupFn) -> None:
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return False

    backup(tree.inclusions(), should_stop=should_stop)
    assert calls == 28  # the last stop_after above is the very last check


def test_crash_before_the_manifest_leaves_no_snapshot(
    tree: Tree, vault: Vault, backup: BackupFn
) -> None:
    def on_progress(progress: BackupProgress) -> None:
        if progress.files_backed_up > 0:
            raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError, match="worker killed"):
        backup(tree.inclusions(), on_progress=on_progress)
    assert vault.list_snapshots() == []
    assert tmp_leftovers(vault.root) == []
    assert locks_in(vault) == []

    result = backup(tree.inclusions())
    assert result.snapshot_id == 1
    assert result.files_backed_up == 5
    assert vault.list_snapshots() == [1]


@pytest.mark.parametrize("fail_at", [1, 3, 6])
def test_a_chunk_the_pool_cannot_store_fails_the_run(
    tree: Tree, vault: Vault, backup: BackupFn, monkeypatch: pytest.MonkeyPatch, fail_at: int
) -> None:
    # The main thread checks finished batches without their futures: a failed one must still
    # end the run with its error, whichever file's chunk it was.
    real_store = backup_module.ChunkWriter.store
    calls = 0
    lock = threading.Lock()

    def failing_store(self: Any, data: bytes) -> Any:
        nonlocal calls
        with lock:
            calls += 1
            if calls == fail_at:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_store(self, data)

    monkeypatch.setattr(backup_module.ChunkWriter, "store", failing_store)
    with pytest.raises(OSError, match="No space left"):
        backup(tree.inclusions())
    assert vault.list_snapshots() == []


def test_max_bps_throttles_reading(tmp_path: Path, vault: Vault, backup: BackupFn) -> None:
    # One new 2 MiB file, read once and throttled: about 2 s at 1 MiB/s.
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "data").write_bytes(os.urandom(2 * MIB))
    progress: list[BackupProgress] = []
    started = time.monotonic()

    result = backup(
        [{"type": "folder", "path": f"{tmp_path}/src/"}], max_bps=MIB, progress=progress
    )

    elapsed = time.monotonic() - started
    assert result.bytes_backed_up == 2 * MIB
    assert 1.5 <= elapsed < 3.0
    # Throttled reads are smaller than 1 MiB, so progress comes several times per MiB.
    assert len({p.bytes_completed for p in progress if 0 < p.bytes_completed < 2 * MIB}) >= 6


def test_concurrent_backups_get_distinct_snapshot_ids(tree: Tree, tmp_path: Path) -> None:
    both_scanned = threading.Barrier(2)
    results: list[BackupResult] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            result = run_backup(
                Vault(tmp_path / "vault", password=PASSWORD, kdf=FAST_KDF),
                tree.inclusions(),
                [],
                on_progress=lambda p: None,
                should_stop=lambda: False,
                # Both runs store at the same time.
                on_phase=lambda phase: phase == "in_progress" and both_scanned.wait(timeout=10),
            )
            results.append(result)
        except BaseException as exc:  # re-raised in the test thread below
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert failures == []
    assert sorted(r.snapshot_id for r in results) == [1, 2]
    vault = Vault(tmp_path / "vault", password=PASSWORD, kdf=FAST_KDF)
    assert vault.list_snapshots() == [1, 2]
    stored = chunk_ids(vault)
    assert {c for content in tree.unique_contents for c in content_ids(vault, content)} <= stored
    # Each distinct content is new to exactly one of the runs, or to both if they raced on it.
    assert sum(r.files_backed_up for r in results) >= 5
    assert tmp_leftovers(vault.root) == []
    for snapshot_id in (1, 2):
        for entry in vault.read_manifest(snapshot_id).entries:
            if entry.kind == "file":
                assert file_bytes(vault, entry) == tree.files[entry.path]


def test_bytes_backed_up_grow_as_data_reaches_the_vault(
    vault: Vault, backup: BackupFn, tmp_path: Path
) -> None:
    """Not when a file's turn in the snapshot's tree comes: a file whose last small chunk
    waits in a shared batch used to hold the counter still for most of the run."""
    import random

    src = tmp_path / "random"
    src.mkdir()
    rng = random.Random(12)
    for i in range(24):
        (src / f"f{i:02}").write_bytes(rng.randbytes(3 * 1024 * 1024))
    progress: list[BackupProgress] = []
    result = backup([{"type": "folder", "path": f"{src}/"}], progress=progress)
    total = result.bytes_backed_up
    late = [p for p in progress if p.bytes_completed >= 0.9 * p.total_bytes > 0]
    assert late, "no progress report near the end"
    assert late[0].bytes_backed_up >= 0.6 * total, (late[0].bytes_backed_up, total)
