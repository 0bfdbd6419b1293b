"""Opening a source file for a backup: by name in the folder it was listed from, never through
a link, and only if it is still a regular file."""

from __future__ import annotations

import errno
import os
import stat

from cloudbackup.engine.errors import FILE_UNREADABLE, FileError, os_error, path_str


class SourceFailed(Exception):
    """Reading a source file failed: a per-file error, unlike a failure of the vault."""

    def __init__(self, error: FileError) -> None:
        super().__init__(error.description)
        self.error = error


def open_regular(path: bytes, folder: int) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading only if it is still a regular file, by its name in the open
    ``folder`` the walk listed it from: never through a link, the folders above included.

    A raw descriptor (the caller closes it), read with ``os.read``: a file object per file
    costs more than the read itself when the files are small."""
    # O_NONBLOCK: if the path became a FIFO since the scan, opening it must not hang the run.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path.rpartition(b"/")[2], flags, dir_fd=folder)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SourceFailed(_changed_kind(path, "a symbolic link")) from exc
        raise SourceFailed(os_error(path, exc)) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SourceFailed(_changed_kind(path, "not a regular file"))
        return fd, st
    except BaseException:
        os.close(fd)
        raise


def _changed_kind(path: bytes, now: str) -> FileError:
    return FileError(
        path=path_str(path), type=FILE_UNREADABLE, description=f"was a file when scanned, now {now}"
    )
