"""Links where folders are expected: restores and backups never follow one, before or during."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from engine_trees import MTIME_NS, BackupFn, Tree, build_tree, chunk_ids, content_ids, describe

from cloudbackup.engine import (
    FILE_EXISTS,
    FILE_OR_FOLDER_MISSING,
    FILE_UNREADABLE,
    FILE_UNWRITABLE,
    Entry,
    FileError,
    Selection,
    Vault,
    restore_snapshot,
)
from cloudbackup.engine import backup as backup_module
from cloudbackup.engine import dirfd as dirfd_module
from cloudbackup.engine import walk as walk_module
from cloudbackup.engine.dirfd import FolderCache, NotAFolder

SECRET = b"the contents of a file the worker may read but the backup must not hold\n"


@pytest.fixture
def small(tmp_path: Path) -> Tree:
    """src/a.txt, src/sub/x.txt, src/sub/y.txt: one file before the folder, two inside it."""
    tree = Tree(tmp_path / "src")
    tree.write("a.txt", b"first\n")
    tree.write("sub/x.txt", b"x in sub\n")
    tree.write("sub/y.txt", b"y in sub\n")
    return tree


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder the restore must never write into (think /etc/cron.d)."""
    folder = tmp_path / "cron.d"
    folder.mkdir()
    return folder


def at(destination: Path, path: bytes | Path) -> Path:
    """Where ``path`` of the snapshot lands below ``destination``."""
    return destination / os.fsdecode(path).lstrip("/")


def open_below(folder: Path) -> list[str]:
    """What this process holds open at or below ``folder``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, closed meanwhile
        if target == str(folder) or target.startswith(f"{folder}/"):
            found.append(target)
    return found


def errors_by_name(errors: list[Any]) -> dict[str, tuple[str, int | None]]:
    return {os.path.basename(e.path): (e.type, e.code) for e in errors}


def test_a_folder_of_the_destination_replaced_by_a_link_is_never_followed(
    small: Tree, vault: Vault, backup: BackupFn, tmp_path: Path, outside: Path
) -> None:
    snapshot_id = backup(small.inclusions()).snapshot_id
    destination = tmp_path / "restore"
    at(destination, small.root).mkdir(parents=True)
    os.symlink(outside, at(destination, small.path("sub")))

    result = restore_snapshot(vault, snapshot_id, destination)

    assert os.listdir(outside) == []
    assert errors_by_name(result.errors) == {
        "sub": (FILE_EXISTS, None),  # kept, as any existing non-folder is without overwrite
        "x.txt": (FILE_UNWRITABLE, errno.ENOTDIR),
        "y.txt": (FILE_UNWRITABLE, errno.ENOTDIR),
    }
    assert "symbolic link (not followed)" in next(
        e.description or "" for e in result.errors if e.path.endswith("x.txt")
    )
    # The restore went on with the others.
    assert result.files_restored == 1
    assert at(destination, small.path("a.txt")).read_bytes() == b"first\n"

    # With overwrite, the link itself is replaced by the folder (today's rule), never followed.
    replaced = restore_snapshot(vault, snapshot_id, destination, overwrite=True)
    assert replaced.errors == []
    assert os.listdir(outside) == []
    assert describe(at(destination, small.root)) == describe(small.root)


def test_a_folder_above_the_snapshot_replaced_by_a_link_is_never_followed(
    small: Tree, vault: Vault, backup: BackupFn, tmp_path: Path, outside: Path
) -> None:
    snapshot_id = backup(small.inclusions()).snapshot_id
    destination = tmp_path / "restore"
    destination.mkdir()
    # The first component below the destination is no entry of the snapshot (made as needed).
    first = os.fsencode(small.root).lstrip(b"/").split(b"/")[0]
    os.symlink(outside, os.path.join(os.fsencode(destination), first))

    result = restore_snapshot(vault, snapshot_id, destination)

    assert os.listdir(outside) == []
    assert result.files_restored == 0
    assert len(result.errors) == 5  # every folder and file of the snapshot
    assert {(e.type, e.code) for e in result.errors} == {(FILE_UNWRITABLE, errno.ENOTDIR)}


def test_a_folder_replaced_by_a_link_during_the_restore_is_never_followed(
    small: Tree,
    vault: Vault,
    backup: BackupFn,
    tmp_path: Path,
    outside: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    snapshot_id = backup(small.inclusions()).snapshot_id
    destination = tmp_path / "restore"
    sub = at(destination, small.path("sub"))
    first_content = content_ids(vault, b"first\n")[0]
    real_decode = vault.decode_chunk
    swapped: list[bool] = []

    def read_then_swap(chunk_id: bytes, *args: Any) -> bytes:
        # Once a.txt's content is read, every folder exists: sub is swapped before x.txt is
        # written (decode_chunk: chunks are read one by one or with their batch's).
        if chunk_id == first_content and not swapped:
            sub.rename(sub.with_name("sub.moved"))
            os.symlink(outside, sub)
            swapped.append(True)
        return real_decode(chunk_id, *args)

    monkeypatch.setattr(vault, "decode_chunk", read_then_swap)
    result = restore_snapshot(vault, snapshot_id, destination, workers=1)

    assert swapped
    assert os.listdir(outside) == []
    # x.txt and y.txt, and the folder's mode and mtime: nothing is done through the link.
    assert errors_by_name(result.errors) == {
        "sub": (FILE_UNWRITABLE, errno.ENOTDIR),
        "x.txt": (FILE_UNWRITABLE, errno.ENOTDIR),
        "y.txt": (FILE_UNWRITABLE, errno.ENOTDIR),
    }
    assert os.stat(outside).st_mtime_ns != MTIME_NS
    assert at(destination, small.path("a.txt")).read_bytes() == b"first\n"


def test_a_folder_replaced_by_a_link_is_not_followed_restoring_in_place(
    small: Tree, vault: Vault, backup: BackupFn, outside: Path
) -> None:
    snapshot_id = backup(small.inclusions()).snapshot_id
    shutil.rmtree(small.root)
    small.root.mkdir()
    os.symlink(outside, small.root / "sub")

    result = restore_snapshot(vault, snapshot_id, None)

    assert os.listdir(outside) == []
    assert errors_by_name(result.errors) == {
        "sub": (FILE_EXISTS, None),
        "x.txt": (FILE_UNWRITABLE, errno.ENOTDIR),
        "y.txt": (FILE_UNWRITABLE, errno.ENOTDIR),
    }
    assert (small.root / "a.txt").read_bytes() == b"first\n"


def test_the_destination_itself_may_be_a_link(
    tree: Tree, vault: Vault, backup: BackupFn, tmp_path: Path
) -> None:
    # The destination is what the caller checked (the allowed roots): it is followed as given.
    snapshot_id = backup(tree.inclusions()).snapshot_id
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "destination")

    result = restore_snapshot(vault, snapshot_id, tmp_path / "destination")

    assert result.errors == []
    assert describe(at(real, tree.root)) == describe(tree.root)


def test_folders_are_opened_once_per_thread_not_once_per_file(
    vault: Vault, backup: BackupFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = Tree(tmp_path / "src")
    for i in range(200):
        tree.write(f"a/b/c/d/f{i:03}", b"%d\n" % i)
    snapshot_id = backup(tree.inclusions()).snapshot_id
    real_open = os.open
    folder_opens: list[Any] = []

    def counting_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        # O_TMPFILE holds O_DIRECTORY's bit: a new file, not a folder opened.
        if flags & os.O_DIRECTORY and flags & os.O_TMPFILE != os.O_TMPFILE:
            folder_opens.append(path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(dirfd_module.os, "open", counting_open)
    result = restore_snapshot(vault, snapshot_id, tmp_path / "restore", workers=2)

    assert result.errors == [] and result.files_restored == 200
    depth = len(os.fsencode(tree.root).split(b"/")) + 4
    # Each of the three threads opens the chain once; the last pass opens each folder once.
    assert len(folder_opens) <= 3 * (depth + 1) + depth
    assert open_below(tmp_path / "restore") == []  # every descriptor closed at the end


def test_the_folder_cache_is_bounded(tmp_path: Path) -> None:
    anchor = os.fsencode(tmp_path)
    cache = FolderCache(limit=3)
    for i in range(10):
        cache.folder(anchor, b"x/%d" % i, create=True)
    assert len(open_below(tmp_path)) == 3 + 1  # the limit, plus the anchor
    assert sorted(os.listdir(tmp_path / "x")) == [str(i) for i in range(10)]
    os.symlink(tmp_path / "x", tmp_path / "link")
    with pytest.raises(NotAFolder, match="symbolic link"):
        cache.folder(anchor, b"link/0", create=True)
    cache.close()
    assert open_below(tmp_path) == []


def _secret_folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "secrets"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(SECRET)
    return folder


def test_a_folder_swapped_for_a_link_before_its_file_is_read_is_not_read_through(
    tree: Tree, vault: Vault, backup: BackupFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = _secret_folder(tmp_path, "deep.txt")
    victim = tree.path("nested/a/b/deep.txt")
    folder = tree.root / "nested/a/b"
    original = tree.files[victim]
    real_open = backup_module._open_regular

    def swap_then_open(path: bytes, *args: Any) -> Any:
        # After the walk listed nested/a/b, before deep.txt is opened.
        if path == victim and not (tree.root / "nested/a/b.moved").exists():
            folder.rename(tree.root / "nested/a/b.moved")
            os.symlink(secrets, folder)
        return real_open(path, *args)

    monkeypatch.setattr(backup_module, "_open_regular", swap_then_open)
    result = backup(tree.inclusions())

    assert not set(content_ids(vault, SECRET)) & chunk_ids(vault)
    entry = next(e for e in vault.read_manifest(result.snapshot_id).entries if e.path == victim)
    # Read from the folder the walk listed (moved, but the same folder): its own bytes.
    assert b"".join(vault.read_chunk(c) for c in entry.chunks) == original
    assert result.errors == []


def test_a_folder_swapped_for_a_link_while_it_is_listed_is_not_entered(
    tree: Tree, vault: Vault, backup: BackupFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = _secret_folder(tmp_path, "secret.txt")
    folder = tree.path("nested/a")
    folder_st = os.stat(folder)
    real_scandir = os.scandir
    listings: list[Any] = []

    def swap_then_list(target: Any) -> Any:
        lists_folder = target == folder or (
            isinstance(target, int) and os.path.samestat(os.fstat(target), folder_st)
        )
        if lists_folder:
            listings.append(target)
            if len(listings) == 2:  # the second walk, the one whose files are read
                os.rename(folder, folder + b".moved")
                os.symlink(secrets, folder)
        return real_scandir(target)

    monkeypatch.setattr(walk_module.os, "scandir", swap_then_list)
    result = backup(tree.inclusions())

    assert len(listings) == 2
    paths = {e.path for e in vault.read_manifest(result.snapshot_id).entries}
    assert os.path.join(folder, b"secret.txt") not in paths
    assert not set(content_ids(vault, SECRET)) & chunk_ids(vault)
    assert os.path.join(folder, b"sibling.bin") in paths  # the folder listed is the one read


def test_a_file_swapped_for_a_link_to_a_secret_is_not_read_through_it(
    tree: Tree, vault: Vault, backup: BackupFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = _secret_folder(tmp_path, "passwd") / "passwd"
    victim = tree.path("top.txt")
    real_open = backup_module._open_regular

    def swap_then_open(path: bytes, *args: Any) -> Any:
        if path == victim:
            os.unlink(victim)
            os.symlink(secret, victim)
        return real_open(path, *args)

    monkeypatch.setattr(backup_module, "_open_regular", swap_then_open)
    result = backup(tree.inclusions())

    assert [e.path for e in result.errors] == [os.fsdecode(victim)]
    assert not set(content_ids(vault, SECRET)) & chunk_ids(vault)


def test_a_folder_gone_before_its_file_is_read_is_a_missing_file(
    tmp_path: Path, vault: Vault, backup: BackupFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = build_tree(tmp_path / "src", big_size=10)
    victim = tree.path("nested/a/b/deep.txt")
    real_open = backup_module._open_regular

    def remove_then_open(path: bytes, *args: Any) -> Any:
        if path == victim:
            shutil.rmtree(os.path.dirname(victim))
        return real_open(path, *args)

    monkeypatch.setattr(backup_module, "_open_regular", remove_then_open)
    result = backup(tree.inclusions())

    assert [(e.path, e.type) for e in result.errors] == [
        (os.fsdecode(victim), FILE_OR_FOLDER_MISSING)
    ]


def test_a_folder_swapped_for_a_link_after_it_was_looked_at_is_an_error(
    tree: Tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = _secret_folder(tmp_path, "secret.txt")
    folder = tree.path("nested/a")
    real_open_folder = walk_module.open_folder

    def swap_then_open(parent: int, name: bytes, shown: bytes, *args: Any) -> int:
        # Between the folder's stat (it was a folder) and its opening.
        if shown == folder:
            os.rename(folder, folder + b".moved")
            os.symlink(secrets, folder)
        return real_open_folder(parent, name, shown, *args)

    monkeypatch.setattr(walk_module, "open_folder", swap_then_open)
    results = list(walk_module.walk(Selection(tree.inclusions())))

    errors = [r for r in results if isinstance(r, FileError)]
    assert [(e.path, e.type, e.code) for e in errors] == [
        (os.fsdecode(folder), FILE_UNREADABLE, errno.ENOTDIR)
    ]
    assert (
        errors[0].description == "was a folder when looked at, now a symbolic link (not followed)"
    )
    assert not any(isinstance(r, Entry) and r.path.startswith(folder + b"/") for r in results)
