"""Scan phase: list every entry a selection covers, without reading any file content.

Paths are bytes end to end so names that are not valid UTF-8 survive unchanged. Symbolic links are
recorded as links and never followed. Sockets, FIFOs and device nodes are skipped: opening a FIFO
would block the run and device contents are not files worth restoring.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from cloudbackup.engine.errors import INCLUSION_MISSING, FileError, os_error
from cloudbackup.engine.selection import Selection
from cloudbackup.engine.snapshot import Entry, Kind


def walk(selection: Selection) -> Iterator[Entry | FileError]:
    """Yield the selected entries depth-first (a directory before its contents) and problems.

    A directory's children come in name order so two scans of one tree agree. A root that does
    not exist yields an ``inclusion_missing`` error, an entry that vanishes while it is walked
    ``file_or_folder_missing``; a directory or entry that cannot be read yields
    ``file_unreadable`` and the walk goes on with its siblings.
    """
    for root in selection.roots():
        try:
            st = os.lstat(root)
        except OSError as exc:
            yield os_error(root, exc, missing_type=INCLUSION_MISSING)
            continue
        yield from _visit(root, st, selection)


def _visit(path: bytes, st: os.stat_result, selection: Selection) -> Iterator[Entry | FileError]:
    results, children = _expand(path, st)
    yield from results
    # An explicit stack of open listings instead of recursion: deep trees must not hit the
    # recursion limit, and only the listings along the current path are held in memory.
    stack: list[Iterator[os.DirEntry[bytes]]] = [] if children is None else [iter(children)]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
            continue
        # The walker never enters an excluded folder, so no ancestor needs checking.
        if selection.excludes_exactly(child.path):
            continue
        try:
            child_st = child.stat(follow_symlinks=False)
        except OSError as exc:
            yield os_error(child.path, exc)
            continue
        results, children = _expand(child.path, child_st)
        yield from results
        if children is not None:
            stack.append(iter(children))


_Listing = list[os.DirEntry[bytes]]


def _expand(path: bytes, st: os.stat_result) -> tuple[list[Entry | FileError], _Listing | None]:
    """Turn one stat result into what to report, plus the listing to descend into if a directory."""
    if stat.S_ISREG(st.st_mode):
        return [_entry(path, "file", st, size=st.st_size)], None
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except OSError as exc:
            return [os_error(path, exc)], None
        return [_entry(path, "symlink", st, target=target)], None
    if stat.S_ISDIR(st.st_mode):
        entry = _entry(path, "dir", st)
        try:
            with os.scandir(path) as listing:
                children = sorted(listing, key=_name)
        except (FileNotFoundError, NotADirectoryError) as exc:
            # It vanished after being listed: there is nothing left to record.
            return [os_error(path, exc)], None
        except OSError as exc:
            # It exists but its contents are out of reach: keep the directory, report the rest.
            return [entry, os_error(path, exc)], None
        return [entry], children
    return [], None


def _entry(
    path: bytes, kind: Kind, st: os.stat_result, *, size: int = 0, target: bytes | None = None
) -> Entry:
    return Entry(
        path=path,
        kind=kind,
        mode=stat.S_IMODE(st.st_mode),
        mtime_ns=st.st_mtime_ns,
        size=size,
        uid=st.st_uid,
        gid=st.st_gid,
        target=target,
        inode=st.st_ino if kind == "file" else 0,
    )


def _name(entry: os.DirEntry[bytes]) -> bytes:
    return entry.name
