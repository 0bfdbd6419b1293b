"""Scan phase: list every entry a selection covers, without reading any file content.

Paths are bytes end to end so names that are not valid UTF-8 survive unchanged. Symbolic links are
recorded as links and never followed: each folder is listed from a descriptor opened relative to
its parent's with ``O_NOFOLLOW`` (``engine/dirfd.py``), so a folder swapped for a link while the
walk runs is never entered, and :func:`walk_in_folders` hands readers that descriptor. Sockets,
FIFOs and device nodes are skipped: opening a FIFO would block the run and device contents are
not files worth restoring.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from typing import Final, cast

from cloudbackup.engine.dirfd import LIST, NotAFolder, open_folder
from cloudbackup.engine.errors import (
    FILE_UNREADABLE,
    INCLUSION_MISSING,
    FileError,
    os_error,
    path_str,
)
from cloudbackup.engine.selection import Selection
from cloudbackup.engine.snapshot import Entry, Kind


def walk(selection: Selection) -> Iterator[Entry | FileError]:
    """Yield the selected entries depth-first (a directory before its contents) and problems.

    A directory's children come in name order so two scans of one tree agree. A root that does
    not exist yields an ``inclusion_missing`` error, an entry that vanishes while it is walked
    ``file_or_folder_missing``; a directory or entry that cannot be read yields
    ``file_unreadable`` and the walk goes on with its siblings.
    """
    for item, _folder in walk_in_folders(selection):
        yield item


def walk_in_folders(selection: Selection) -> Iterator[tuple[Entry | FileError, int]]:
    """:func:`walk`, each item with the descriptor of the folder holding it, valid until the
    next item: open a file as ``os.open(name, flags, dir_fd=folder)``, never by its path."""
    # Without a tally, only entries and errors come out.
    return cast(Iterator[tuple[Entry | FileError, int]], _walk_roots(selection, None))


class FileTally:
    """What a counting walk has seen of regular files so far: how many, how many bytes."""

    __slots__ = ("bytes", "files")

    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0

    def add(self, size: int) -> bool:
        """Count one file; whether it is time to show the tally."""
        self.files += 1
        self.bytes += size
        return not self.files % TALLY_EVERY


#: A counting walk shows its tally after at most this many files (a huge folder included).
TALLY_EVERY: Final = 256


def count_files(selection: Selection, tally: FileTally) -> Iterator[Entry | FileError | FileTally]:
    """:func:`walk`, but regular files are only added to ``tally`` (no entry is made for them),
    which is yielded every :data:`TALLY_EVERY` files so a caller can report as it goes: the scan
    before a backup, which wants totals, not entries. Folders, links and errors come as in
    :func:`walk`; the folders are opened and listed the same way."""
    for item, _folder in _walk_roots(selection, tally):
        yield item


def _walk_roots(
    selection: Selection, tally: FileTally | None
) -> Iterator[tuple[Entry | FileError | FileTally, int]]:
    for root in selection.roots():
        # The inclusion's own parents are followed, as their path says (the allowed roots
        # check them); from the inclusion down, nothing is.
        parent, name = os.path.split(root)
        try:
            folder = os.open(parent, _PARENT)
        except OSError as exc:
            yield os_error(root, exc, missing_type=INCLUSION_MISSING), -1
            continue
        try:
            name = name or b"."  # the root of the filesystem: the folder itself
            try:
                st = os.stat(name, dir_fd=folder, follow_symlinks=False)
            except OSError as exc:
                yield os_error(root, exc, missing_type=INCLUSION_MISSING), folder
                continue
            if tally is not None and stat.S_ISREG(st.st_mode):  # a file inclusion
                tally.add(st.st_size)
                yield tally, folder
                continue
            yield from _visit(root, name, st, folder, selection, tally)
        finally:
            os.close(folder)


_PARENT = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
# os.fsencode's own encoding, called directly: it runs once per entry.
_FS, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


def _visit(
    path: bytes,
    name: bytes,
    st: os.stat_result,
    folder: int,
    selection: Selection,
    tally: FileTally | None,
) -> Iterator[tuple[Entry | FileError | FileTally, int]]:
    results, listing = _expand(path, name, st, folder)
    for result in results:
        yield result, folder
    # An explicit stack of open folders and their listings instead of recursion: deep trees
    # must not hit the recursion limit, and only the folders along the current path are open.
    stack: list[_Listing] = []
    current = listing
    excluded, is_file = selection.excludes_exactly, stat.S_ISREG
    try:
        while current is not None:
            fd, prefix, children = current
            for child_name, child in children:
                child_path = prefix + child_name
                # The walker never enters an excluded folder, so no ancestor needs checking.
                if excluded(child_path):
                    continue
                try:
                    # Relative to the open folder (the listing was made from its descriptor).
                    child_st = child.stat(follow_symlinks=False)
                except OSError as exc:
                    yield os_error(child_path, exc), fd
                    continue
                if is_file(child_st.st_mode):  # most entries: no detour through _expand
                    if tally is None:
                        yield _file(child_path, child_st), fd
                    elif tally.add(child_st.st_size):
                        yield tally, fd
                    continue
                results, listing = _expand(child_path, child_name, child_st, fd)
                for result in results:
                    yield result, fd
                if listing is not None:
                    stack.append(current)  # its listing resumes where it stopped
                    current = listing
                    break
            else:
                os.close(fd)
                current = stack.pop() if stack else None
    finally:
        for fd, _prefix, _children in [*stack, *([current] if current else [])]:
            os.close(fd)


# An open folder, the prefix of its children's paths, and its listing still to walk.
_Listing = tuple[int, bytes, Iterator[tuple[bytes, os.DirEntry[str]]]]


def _expand(
    path: bytes, name: bytes, st: os.stat_result, folder: int
) -> tuple[list[Entry | FileError], _Listing | None]:
    """Turn one stat result into what to report, plus the listing to descend into if a directory."""
    if stat.S_ISREG(st.st_mode):
        return [_entry(path, "file", st, size=st.st_size)], None
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(name, dir_fd=folder)
        except OSError as exc:
            return [os_error(path, exc)], None
        return [_entry(path, "symlink", st, target=target)], None
    if not stat.S_ISDIR(st.st_mode):
        return [], None
    try:
        fd = open_folder(folder, name, path, LIST)
    except NotAFolder as exc:
        # Replaced since it was looked at: a link is recorded by the next walk, never followed.
        return [_changed(path, exc)], None
    except FileNotFoundError as exc:
        # It vanished after being listed: there is nothing left to record.
        return [os_error(path, exc)], None
    except OSError as exc:
        # It exists but its contents are out of reach: keep the directory, report the rest.
        return [_entry(path, "dir", st), os_error(path, exc)], None
    try:
        # The folder's own metadata goes with the listing: what is open is what is listed.
        entry = _entry(path, "dir", os.fstat(fd))
        # Listed from a descriptor, names come as str: sorted as the bytes they are, since
        # both walks of a run and the previous snapshot must agree on one order.
        with os.scandir(fd) as listing:
            children = sorted([(child.name.encode(_FS, _FS_ERRORS), child) for child in listing])
    except OSError as exc:
        os.close(fd)
        return [_entry(path, "dir", st), os_error(path, exc)], None
    except BaseException:
        os.close(fd)
        raise
    prefix = path if path.endswith(b"/") else path + b"/"
    return [entry], (fd, prefix, iter(children))


def _changed(path: bytes, exc: NotAFolder) -> FileError:
    return FileError(
        path=path_str(path),
        type=FILE_UNREADABLE,
        code=exc.errno,
        description=f"was a folder when looked at, now {exc.what}",
    )


def _file(path: bytes, st: os.stat_result) -> Entry:
    """:func:`_entry` of a regular file, positional: the walk makes one per file."""
    return Entry(
        path,
        "file",
        st.st_mode & 0o7777,
        st.st_mtime_ns,
        st.st_size,
        st.st_uid,
        st.st_gid,
        (),
        None,
        st.st_ino,
    )


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
