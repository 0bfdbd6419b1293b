"""Folders reached through file descriptors, one component at a time, never through a link.

A path names a file only as of the moment it is resolved: a folder on the way replaced by a
symbolic link sends every later path-based call somewhere else (``O_NOFOLLOW`` guards the last
component only). Below an *anchor* (a folder the caller has checked: a restore's destination, the
parent of a backup's inclusion), every component is opened relative to the one before with
``O_NOFOLLOW | O_DIRECTORY``, so a link, or anything else that is not a folder, where a folder is
expected is an error (:class:`NotAFolder`), never followed. The anchor itself is opened as given,
links included: checking it is the caller's job (the allowed roots).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections import OrderedDict
from typing import Final

#: Open a folder to reach what is below it (O_PATH: no read permission needed, as for a path).
TRAVERSE: Final = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Open a folder to list it or change its mode and times.
LIST: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ANCHOR: Final = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
#: Open folders kept per thread; a restore walks folders in order, so a few dozen cover it.
CACHE_LIMIT: Final = 64


class NotAFolder(NotADirectoryError):
    """A link (never followed) or another non-folder stands where a folder is expected."""

    what = "not a folder"  # what stands there instead, for messages


def open_folder(parent_fd: int, name: bytes, shown: bytes, flags: int = TRAVERSE) -> int:
    """Open folder ``name`` below ``parent_fd``; :class:`NotAFolder` (naming ``shown``) if it is
    a link or not a folder."""
    try:
        return os.open(name, flags, dir_fd=parent_fd)
    except NotADirectoryError as exc:
        raise not_a_folder(parent_fd, name, shown) from exc


def not_a_folder(parent_fd: int, name: bytes, shown: bytes) -> NotAFolder:
    """The error for ``name`` below ``parent_fd`` not being a folder, saying what it is."""
    try:
        mode = os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode
    except OSError:
        mode = 0
    what = "a symbolic link (not followed)" if stat.S_ISLNK(mode) else "not a folder"
    error = NotAFolder(errno.ENOTDIR, f"{os.fsdecode(shown)} is {what}", os.fsdecode(shown))
    error.what = what
    return error


def lexists_at(parent_fd: int, name: bytes) -> bool:
    """Whether ``name`` exists below ``parent_fd`` (a link counts as itself)."""
    try:
        os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


class FolderCache:
    """Open folders below anchors for one thread: a bounded LRU of descriptors keyed by anchor
    and relative path, so files in one folder do not reopen the chain each."""

    def __init__(self, limit: int = CACHE_LIMIT) -> None:
        self._limit = max(2, limit)  # the folder being opened from must survive an eviction
        self._anchors: dict[bytes, int] = {}
        self._open: OrderedDict[tuple[bytes, bytes], int] = OrderedDict()

    def folder(self, anchor: bytes, relative: bytes, *, create: bool) -> int:
        """The descriptor of ``anchor/relative`` (``relative`` normalized, b"" = the anchor),
        creating missing folders when ``create``. Valid until the next call on this cache."""
        key = (anchor, relative)
        found = self._open.get(key)
        if found is not None:
            self._open.move_to_end(key)
            return found
        if not relative:
            return self._anchor(anchor, create)
        parts = relative.split(b"/")
        depth = len(parts) - 1
        fd = None
        # The nearest open ancestor, then down from it one component at a time.
        while depth > 0:
            ancestor = (anchor, b"/".join(parts[:depth]))
            fd = self._open.get(ancestor)
            if fd is not None:
                self._open.move_to_end(ancestor)
                break
            depth -= 1
        if fd is None:
            fd = self._anchor(anchor, create)
        for level in range(depth, len(parts)):
            below = b"/".join(parts[: level + 1])
            fd = self._step(fd, parts[level], os.path.join(anchor, below), create)
            self._remember((anchor, below), fd)
        return fd

    def close(self) -> None:
        for fd in self._open.values():
            os.close(fd)
        for fd in self._anchors.values():
            os.close(fd)
        self._open.clear()
        self._anchors.clear()

    def _anchor(self, anchor: bytes, create: bool) -> int:
        fd = self._anchors.get(anchor)
        if fd is None:
            try:
                fd = os.open(anchor, _ANCHOR)
            except FileNotFoundError:
                if not create:
                    raise
                # The anchor is the checked destination: made (and followed) as given.
                os.makedirs(anchor, exist_ok=True)
                fd = os.open(anchor, _ANCHOR)
            self._anchors[anchor] = fd
        return fd

    @staticmethod
    def _step(parent_fd: int, name: bytes, shown: bytes, create: bool) -> int:
        try:
            return open_folder(parent_fd, name, shown)
        except FileNotFoundError:
            if not create:
                raise
        # Made meanwhile (by another thread of the same restore, say): then just open it.
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o777, dir_fd=parent_fd)  # the umask applies, as for os.makedirs
        return open_folder(parent_fd, name, shown)

    def _remember(self, key: tuple[bytes, bytes], fd: int) -> None:
        self._open[key] = fd
        while len(self._open) > self._limit:
            _key, evicted = self._open.popitem(last=False)
            os.close(evicted)


class Folders:
    """One :class:`FolderCache` per thread (descriptors are never shared between threads, so
    an eviction cannot close one another thread is using); :meth:`close` closes them all."""

    def __init__(self, limit: int = CACHE_LIMIT) -> None:
        self._limit = limit
        self._local = threading.local()
        self._caches: list[FolderCache] = []
        self._lock = threading.Lock()

    def cache(self) -> FolderCache:
        """This thread's cache."""
        cache: FolderCache | None = getattr(self._local, "cache", None)
        if cache is None:
            cache = FolderCache(self._limit)
            self._local.cache = cache
            with self._lock:
                self._caches.append(cache)
        return cache

    def close(self) -> None:
        """Close every descriptor; only once no thread uses them any more."""
        with self._lock:
            for cache in self._caches:
                cache.close()
            self._caches.clear()
        self._local = threading.local()
