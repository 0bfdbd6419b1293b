"""Restores that resume: what an earlier attempt finished is kept (not written again) and
counted, what it left half-written is redone and cleared, and a foreign file that only looks
like the snapshot's is never taken as done."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from engine_trees import MIB, MTIME_NS, BackupFn, Tree, describe

from cloudbackup.engine import (
    FILE_EXISTS,
    RestoreProgress,
    RestoreStopped,
    Vault,
    restore_snapshot,
)
from cloudbackup.engine.restored_files import TempNames

RUN = "restore-run-1"


def _root(destination: Path, tree: Tree) -> Path:
    return destination / str(tree.root).lstrip("/")


def _inodes(root: Path) -> dict[Path, int]:
    """Inode of every regular file below ``root``: a file written again gets a new one."""
    return {p: p.lstat().st_ino for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def _same_metadata(path: Path, content: bytes) -> None:
    """Replace ``path``'s content, keeping its size, mode and mtime."""
    mode = path.stat().st_mode
    path.chmod(0o600)
    path.write_bytes(content)
    path.chmod(mode)
    os.utime(path, ns=(MTIME_NS, MTIME_NS))


def _restored_once(
    tree: Tree, vault: Vault, backup: BackupFn, tmp_path: Path
) -> tuple[int, Path, Path]:
    """A backup of ``tree`` restored once: its snapshot, the destination and the tree in it."""
    snapshot_id = backup(tree.inclusions()).snapshot_id
    destination = tmp_path / "restore"
    assert restore_snapshot(vault, snapshot_id, destination).errors == []
    return snapshot_id, destination, _root(destination, tree)


def test_a_finished_file_is_kept_and_counted_not_written_again(
    tree: Tree, vault: Vault, backup: BackupFn, tmp_path: Path
) -> None:
    snapshot_id, destination, root = _restored_once(tree, vault, backup, tmp_path)
    before = _inodes(root)

    for kwargs in ({"overwrite": True}, {"resume": True}, {"overwrite": True, "resume": True}):
        again = restore_snapshot(vault, snapshot_id, destination, **kwargs)  # type: ignore[arg-type]

        assert again.errors == [], kwargs
        assert (again.files_restored, again.bytes_restored) == (tree.file_count, tree.byte_count)
        assert (again.files_in_place, again.bytes_in_place) == (tree.file_count, tree.byte_count)
        assert _inodes(root) == before, kwargs  # none written again
        assert describe(root) == describe(tree.root)


def test_a_foreign_file_with_the_same_size_mode_and_mtime_is_overwritten(
    tree: Tree, vault: Vault, backup: BackupFn, tmp_path: Path
) -> None:
    snapshot_id, destination, root = _restored_once(tree, vault, backup, tmp_path)
    big = root / "big.bin"
    original = big.read_bytes()
    # Same size, mode and mtime; only the last byte differs (its last chunk).
    _same_metadata(big, original[:-1] + bytes([original[-1] ^ 1]))
    top = root / "top.txt"
    _same_metadata(top, b"HELLO\n")

    replaced = restore_snapshot(vault, snapshot_id, destination, overwrite=True, resume=True)

    assert replaced.errors == []
    assert replaced.files_restored == tree.file_count
    assert replaced.files_in_place == tree.file_count - 2
    assert (big.read_bytes(), top.read_bytes()) == (original, b"hello\n")
    assert describe(root) == describe(tree.root)

    # Without overwrite a foreign file is kept and reported, resuming or not.
    _same_metadata(top, b"HELLO\n")
    kept = restore_snapshot(vault, snapshot_id, destination, resume=True)
    assert [(Path(e.path).name, e.type) for e in kept.errors] == [("top.txt", FILE_EXISTS)]
    assert top.read_bytes() == b"HELLO\n"


def test_a_torn_file_under_its_final_name_is_redone(
    tree: Tree, vault: Vault, backup: BackupFn, tmp_path: Path
) -> None:
    # What a crash before the kernel wrote a renamed file out can leave: the right name, size,
    # mode and mtime, and zeros for content.
    snapshot_id, destination, root = _restored_once(tree, vault, backup, tmp_path)
    big = root / "big.bin"
    original = big.read_bytes()
    _same_metadata(big, bytes(len(original)))

    resumed = restore_snapshot(vault, snapshot_id, destination, overwrite=True, resume=True)

    assert resumed.errors == []
    assert resumed.bytes_in_place == tree.byte_count - len(original)
    assert big.read_bytes() == original


def test_a_half_written_temp_file_of_an_earlier_attempt_is_redone_and_removed(
    tree: Tree, vault: Vault, backup: BackupFn, tmp_path: Path
) -> None:
    snapshot_id, destination, root = _restored_once(tree, vault, backup, tmp_path)
    big = root / "big.bin"
    content = big.read_bytes()
    # The first attempt was killed while writing big.bin: only its temp file holds anything.
    big.unlink()
    earlier = os.fsdecode(TempNames(RUN).next(b"big.bin"))
    (root / earlier).write_bytes(content[: len(content) // 2])
    (root / "nested" / os.fsdecode(TempNames(RUN).next(b"deep.txt"))).write_bytes(b"half")
    # Another restore's temp file (another run key) is none of this run's business.
    other = os.fsdecode(TempNames("another-restore").next(b"top.txt"))
    (root / other).write_bytes(b"in flight")

    resumed = restore_snapshot(vault, snapshot_id, destination, resume=True, run_key=RUN)

    assert resumed.errors == []
    assert resumed.files_restored == tree.file_count
    assert resumed.files_in_place == tree.file_count - 1
    assert big.read_bytes() == content
    assert sorted(p.name for p in root.rglob("*.restore-*")) == [other]
    (root / other).unlink()
    assert describe(root) == describe(tree.root)


def _many_files(root: Path, count: int = 96, size: int = 128 * 1024) -> Tree:
    rng = random.Random(7)
    tree = Tree(root)
    root.mkdir(parents=True)
    for i in range(count):
        tree.write(f"d{i % 4}/file{i}.bin", rng.randbytes(size))
    tree.write("big.bin", rng.randbytes(2 * MIB))
    return tree


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_stopped_attempt_resumed_reports_the_runs_true_totals(
    vault: Vault, backup: BackupFn, tmp_path: Path, overwrite: bool
) -> None:
    tree = _many_files(tmp_path / "src")
    snapshot_id = backup(tree.inclusions()).snapshot_id
    destination = tmp_path / "restore"
    seen: list[RestoreProgress] = []

    with pytest.raises(RestoreStopped):
        restore_snapshot(
            vault,
            snapshot_id,
            destination,
            overwrite=overwrite,
            on_progress=seen.append,
            # Early: a few MiB of files are handed to the writer threads ahead of the checks.
            should_stop=lambda: bool(seen) and seen[-1].files_restored >= 8,
            run_key=RUN,
        )
    finished = _inodes(_root(destination, tree))
    assert 0 < len(finished) < tree.file_count
    done_bytes = sum(p.stat().st_size for p in finished)
    progress: list[RestoreProgress] = []

    resumed = restore_snapshot(
        vault,
        snapshot_id,
        destination,
        overwrite=overwrite,
        resume=True,
        on_progress=progress.append,
        run_key=RUN,
    )

    assert resumed.errors == []
    assert (resumed.files_restored, resumed.bytes_restored) == (tree.file_count, tree.byte_count)
    assert (resumed.files_in_place, resumed.bytes_in_place) == (len(finished), done_bytes)
    assert progress[-1].bytes_in_place == done_bytes
    assert progress[-1].bytes_restored == tree.byte_count
    after = _inodes(_root(destination, tree))
    assert all(after[p] == inode for p, inode in finished.items())  # kept, not written again
    assert describe(_root(destination, tree)) == describe(tree.root)
