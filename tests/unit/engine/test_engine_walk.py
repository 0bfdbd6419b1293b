"""Scan phase: what the walker reports for a tree, its exclusions and its failures."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from engine_trees import NON_UTF8_NAME, Tree

from cloudbackup.engine import FILE_UNREADABLE, INCLUSION_MISSING, Entry, FileError, Selection
from cloudbackup.engine import walk as walk_module
from cloudbackup.engine.walk import FileTally, count_files, walk


def scan(inclusions: list[Any], exclusions: list[Any] | None = None) -> list[Entry | FileError]:
    return list(walk(Selection(inclusions, exclusions or [])))


def entries_by_path(results: list[Entry | FileError]) -> dict[bytes, Entry]:
    return {r.path: r for r in results if isinstance(r, Entry)}


def test_reports_every_kind_without_following_links(tree: Tree) -> None:
    results = scan(tree.inclusions())
    assert [r for r in results if isinstance(r, FileError)] == []
    found = entries_by_path(results)
    kinds = {os.path.relpath(p, tree.root_bytes): e.kind for p, e in found.items()}
    assert kinds == {
        b".": "dir",
        b"top.txt": "file",
        b"zero": "file",
        b"big.bin": "file",
        b"empty": "dir",
        b"nested": "dir",
        b"nested/" + NON_UTF8_NAME: "file",
        b"nested/a": "dir",
        b"nested/a/b": "dir",
        b"nested/a/b/deep.txt": "file",
        b"nested/a/sibling.bin": "file",
        b"nested/a/copy-of-top.txt": "file",
        b"link-to-file": "symlink",
        b"link-to-dir": "symlink",  # recorded, not descended into
        b"dangling": "symlink",
    }
    assert found[tree.path("link-to-dir")].target == b"nested/a"
    assert found[tree.path("dangling")].target == b"/does/not/exist"
    big = found[tree.path("big.bin")]
    assert big.size == len(tree.files[tree.path("big.bin")])
    assert found[tree.path("nested/a")].mode == 0o750
    assert found[tree.path("nested/a/b/deep.txt")].mode == 0o600


def test_a_counting_walk_tallies_the_files_and_yields_the_rest(tree: Tree) -> None:
    exclusions = [{"type": "file", "path": os.fsdecode(tree.path("top.txt"))}]
    walked = scan([*tree.inclusions(), {"type": "file", "path": "/missing"}], exclusions)
    tally = FileTally()
    selection = Selection([*tree.inclusions(), {"type": "file", "path": "/missing"}], exclusions)
    counted = [r for r in count_files(selection, tally) if r is not tally]
    files = [r for r in walked if isinstance(r, Entry) and r.kind == "file"]
    assert (tally.files, tally.bytes) == (len(files), sum(f.size for f in files))
    assert counted == [r for r in walked if not (isinstance(r, Entry) and r.kind == "file")]
    assert any(isinstance(r, FileError) for r in counted)  # the missing inclusion


def test_a_file_inclusion_is_tallied(tree: Tree) -> None:
    tally = FileTally()
    items = list(
        count_files(Selection([{"type": "file", "path": os.fsdecode(tree.path("zero"))}]), tally)
    )
    assert items == [tally]
    assert (tally.files, tally.bytes) == (1, 0)


def test_directories_come_before_their_contents(tree: Tree) -> None:
    paths = [r.path for r in scan(tree.inclusions()) if isinstance(r, Entry)]
    seen: set[bytes] = set()
    for path in paths:
        if path != tree.root_bytes:
            assert os.path.dirname(path) in seen, path
        seen.add(path)


def test_missing_inclusion_is_an_error_and_the_rest_is_walked(tree: Tree) -> None:
    missing = f"{tree.root.parent}/no-such-dir/"
    results = scan([*tree.inclusions(), {"type": "folder", "path": missing}])
    errors = [r for r in results if isinstance(r, FileError)]
    assert errors == [
        FileError(
            path=missing.rstrip("/"),
            type=INCLUSION_MISSING,
            code=errno.ENOENT,
            description="No such file or directory",
        )
    ]
    assert tree.path("big.bin") in entries_by_path(results)


def test_exclusions_skip_files_and_whole_folders(tree: Tree) -> None:
    results = scan(
        tree.inclusions(),
        [
            {"type": "folder", "path": f"{tree.root}/nested/a/"},
            {"type": "file", "path": f"{tree.root}/big.bin"},
        ],
    )
    found = entries_by_path(results)
    assert tree.path("big.bin") not in found
    assert tree.path("nested/a") not in found
    assert not any(p.startswith(tree.path("nested/a/")) for p in found)
    assert tree.path("nested") in found
    assert tree.path(b"nested/" + NON_UTF8_NAME) in found


def test_file_inclusion_and_symlink_root(tree: Tree) -> None:
    results = scan(
        [
            {"type": "file", "path": os.fsdecode(tree.path("top.txt"))},
            {"type": "folder", "path": os.fsdecode(tree.path("link-to-dir")) + "/"},
        ]
    )
    found = entries_by_path(results)
    assert set(found) == {tree.path("top.txt"), tree.path("link-to-dir")}
    assert found[tree.path("link-to-dir")].kind == "symlink"


def test_unreadable_directory_is_kept_and_reported(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests run as root, where chmod cannot deny access: fail the listing instead.
    denied = tree.path("nested/a")
    denied_st = os.stat(denied)
    real_scandir = os.scandir

    def scandir(folder: Any) -> Any:
        # Folders are listed from their descriptors.
        if isinstance(folder, int) and os.path.samestat(os.fstat(folder), denied_st):
            raise PermissionError(errno.EACCES, "Permission denied", denied)
        return real_scandir(folder)

    monkeypatch.setattr(walk_module.os, "scandir", scandir)
    results = scan(tree.inclusions())
    errors = [r for r in results if isinstance(r, FileError)]
    assert errors == [
        FileError(
            path=os.fsdecode(denied),
            type=FILE_UNREADABLE,
            code=errno.EACCES,
            description="Permission denied",
        )
    ]
    found = entries_by_path(results)
    assert found[denied].kind == "dir"
    assert tree.path("nested/a/b") not in found
    assert tree.path("big.bin") in found


def test_special_files_are_skipped_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "plain").write_bytes(b"x")
    found = entries_by_path(scan([{"type": "folder", "path": str(tmp_path)}]))
    assert set(found) == {os.fsencode(tmp_path), os.fsencode(tmp_path / "plain")}


def test_trees_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    depth = 300
    deepest = os.fsencode(tmp_path)
    for _ in range(depth):
        deepest += b"/d"
        os.mkdir(deepest)
    # A recursive walker would need a frame per level; leave it far fewer than that.
    frames = 0
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        frames, frame = frames + 1, frame.f_back
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(frames + depth // 3)
    try:
        found = entries_by_path(scan([{"type": "folder", "path": str(tmp_path / "d")}]))
    finally:
        sys.setrecursionlimit(limit)
    assert len(found) == depth
    assert deepest in found
