"""File operations the restorer needs beyond ``os``: placing a file without replacing one,
unnamed files (``O_TMPFILE``) given a name once complete, the umask."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from typing import Any, Final

_AT_FDCWD: Final = -100
_RENAME_NOREPLACE: Final = 1
# os.link fails with these where hard links are unsupported; then rename is the fallback.
_NO_HARDLINKS: Final = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK})


def _load_renameat2() -> Any:
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_renameat2 = _load_renameat2()


def rename_noreplace(
    source: bytes, target: bytes, *, src_dir_fd: int = _AT_FDCWD, dst_dir_fd: int = _AT_FDCWD
) -> bool:
    """rename() that refuses an existing target (renameat2 RENAME_NOREPLACE): one directory
    change where link() and unlink() make two. Relative names are taken below the folder
    descriptors when given. False where the kernel or filesystem lacks it; ``FileExistsError``
    if the target exists."""
    global _renameat2
    if _renameat2 is None:
        return False
    if _renameat2(src_dir_fd, source, dst_dir_fd, target, _RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EEXIST:
        raise FileExistsError(err, os.strerror(err), target)
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        _renameat2 = None  # not here: link() and unlink() from now on
        return False
    raise OSError(err, os.strerror(err), target)


def place_at(parent: int, tmp: bytes, name: bytes, *, replace: bool) -> bool:
    """Move ``tmp`` to ``name``, both in the folder open as ``parent``; unless ``replace``,
    never replace anything: False if ``name`` exists (or appears meanwhile)."""
    at = {"src_dir_fd": parent, "dst_dir_fd": parent}
    if replace:
        os.replace(tmp, name, **at)
        return True
    try:
        if rename_noreplace(tmp, name, **at):
            return True
        # link() refuses an existing target atomically, unlike rename().
        os.link(tmp, name, **at, follow_symlinks=False)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_HARDLINKS:
            raise
        try:
            os.stat(name, dir_fd=parent, follow_symlinks=False)
            return False
        except FileNotFoundError:
            os.rename(tmp, name, **at)
            return True
    os.unlink(tmp, dir_fd=parent)
    return True


#: Where a process sees its own descriptors as links: how an unnamed file is given a name
#: without CAP_DAC_READ_SEARCH (linkat's AT_EMPTY_PATH needs it).
_OWN_FDS: Final = "/proc/self/fd"
_UNNAMED: Final = os.O_WRONLY | os.O_CLOEXEC | getattr(os, "O_TMPFILE", 0)
# open(O_TMPFILE) fails with these where the kernel or filesystem lacks it.
_NO_TMPFILE: Final = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})
_tmpfile_usable = bool(getattr(os, "O_TMPFILE", 0)) and os.path.isdir(_OWN_FDS)


def open_unnamed(parent: int, mode: int) -> int | None:
    """A new file without a name in the folder open as ``parent`` (``O_TMPFILE``), created with
    ``mode`` (less the umask), for writing; None where that is unsupported (then never again).
    Nothing of it is visible in the folder until :func:`link_unnamed`; a crash leaves nothing.
    """
    global _tmpfile_usable
    if not _tmpfile_usable:
        return None
    try:
        return os.open(".", _UNNAMED, mode, dir_fd=parent)
    except OSError as exc:
        if exc.errno not in _NO_TMPFILE:
            raise
        _tmpfile_usable = False
        return None


def link_unnamed(fd: int, parent: int, name: bytes) -> bool:
    """Give the unnamed file open as ``fd`` the name ``name`` in folder ``parent``; never
    replaces anything (False if ``name`` exists, as a link or anything else)."""
    try:
        os.link(f"{_OWN_FDS}/{fd}", name, dst_dir_fd=parent, follow_symlinks=True)
    except FileExistsError:
        return False
    return True


def current_umask() -> int:
    # The only way to read the umask is to set it; done once per restore, then put back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def unlink_quietly(path: bytes, *, dir_fd: int | None = None) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path, dir_fd=dir_fd)
