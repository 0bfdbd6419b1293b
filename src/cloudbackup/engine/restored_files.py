"""What an earlier attempt of a restore left behind: files it finished, and temp files it did not.

A restore writes every file under a temp name beside its target and moves it into place only
once its content, mode and mtime are set (``engine/restore.py``), so a half-written file never
holds a target's name. A file under its final name is taken as already restored only when it
is provably what the restore would write: a regular file (not followed through a link) of the
entry's size, mode and mtime whose content, cut again with the vault's chunker, has exactly the
entry's chunk ids. That catches a file the earlier attempt finished (kept, not written again),
and refuses a foreign file that only looks the same, or one torn by a crash before the kernel
wrote it out (restores do not fsync), which are then handled as any existing file is.

Temp names carry the run's key and the attempt's tag (:class:`TempNames`), so a re-driven
attempt can remove exactly the temp files its run's earlier attempts left (a ``kill -9``
gives them no chance to) and never one of another restore writing to the same folder.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
import stat
from typing import Final

from cloudbackup.engine.dirfd import LIST
from cloudbackup.engine.file_ops import unlink_quietly
from cloudbackup.engine.snapshot import Entry
from cloudbackup.engine.vault import Vault

#: Bytes read at a time while checking a file already in place.
_READ_BLOCK: Final = 8 * 1024 * 1024
_OPEN_EXISTING: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class TempNames:
    """Temp names of one attempt of a restore: ``.<name>.restore-<run>-<attempt>-<n>``.

    ``run_key`` names the run across its attempts (a restore's id); without one every attempt
    is a run of its own, so nothing it finds is its own leftover."""

    def __init__(self, run_key: str | None = None) -> None:
        if run_key is None:
            self.run = secrets.token_hex(4).encode()
        else:
            self.run = hashlib.blake2b(run_key.encode(), digest_size=4).hexdigest().encode()
        self.attempt = secrets.token_hex(4).encode()
        self._counter = itertools.count()
        self._marker = b".restore-%s-" % self.run
        self._mine = b"%s%s-" % (self._marker, self.attempt)

    def next(self, name: bytes) -> bytes:
        """A fresh temp name for ``name`` (no system call: no random bytes per file)."""
        return b".%s%s%d" % (name[:200], self._mine, next(self._counter))

    def left_by_earlier_attempt(self, filename: bytes) -> bool:
        """Whether ``filename`` is a temp name of this run made by another attempt."""
        return (
            filename.startswith(b".")
            and self._marker in filename
            and self._mine not in filename
            and filename.rpartition(b"-")[2].isdigit()
        )


def clear_leftovers(folder_fd: int, names: TempNames) -> None:
    """Remove, from the folder open as ``folder_fd``, the temp files of the run's earlier
    attempts. Best effort: a folder that cannot be listed keeps them."""
    try:
        listing = os.open(b".", LIST, dir_fd=folder_fd)
    except OSError:
        return
    try:
        found = os.listdir(listing)
    except OSError:
        return
    finally:
        os.close(listing)
    for filename in found:
        encoded = os.fsencode(filename)
        if names.left_by_earlier_attempt(encoded):
            unlink_quietly(encoded, dir_fd=folder_fd)


def holds_entry(vault: Vault, parent: int, name: bytes, entry: Entry) -> bool:
    """Whether ``name`` in the folder open as ``parent`` is exactly what restoring ``entry``
    writes: a regular file of its size, mode and mtime with its chunks' content."""
    try:
        fd = os.open(name, _OPEN_EXISTING, dir_fd=parent)
    except OSError:  # missing, a link (never followed), unreadable: not known to be done
        return False
    try:
        info = os.fstat(fd)  # of the file read below, not of whatever the name held before
        if not (
            stat.S_ISREG(info.st_mode)
            and info.st_size == entry.size
            and stat.S_IMODE(info.st_mode) == entry.mode
            and info.st_mtime_ns == entry.mtime_ns
        ):
            return False
        return _content_matches(vault, fd, entry)
    except OSError:
        return False
    finally:
        os.close(fd)


def _content_matches(vault: Vault, fd: int, entry: Entry) -> bool:
    """Whether the file open as ``fd`` cuts into exactly ``entry``'s chunk ids (read once,
    stopping at the first chunk that differs)."""
    expected = entry.chunks
    cutter = vault.new_cutter()
    chunk_id = vault.sealer.chunk_id
    matched = read = 0
    while read < entry.size:
        block = os.read(fd, min(_READ_BLOCK, entry.size - read))
        if not block:
            return False  # shorter than it said
        read += len(block)
        for chunk in cutter.feed(block, last=read == entry.size):
            if matched >= len(expected) or chunk_id(chunk) != expected[matched]:
                return False
            matched += 1
    for chunk in cutter.finish():
        if matched >= len(expected) or chunk_id(chunk) != expected[matched]:
            return False
        matched += 1
    return matched == len(expected) and not os.read(fd, 1)


def link_in_place(parent: int, name: bytes, entry: Entry) -> bool:
    """Whether ``name`` in folder ``parent`` is a link to ``entry``'s target."""
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
        return stat.S_ISLNK(info.st_mode) and os.readlink(name, dir_fd=parent) == entry.target
    except OSError:
        return False
