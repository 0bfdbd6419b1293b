"""File operations the restorer needs beyond ``os``: a rename that never replaces, the umask."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from typing import Any, Final

_AT_FDCWD: Final = -100
_RENAME_NOREPLACE: Final = 1


def _load_renameat2() -> Any:
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_renameat2 = _load_renameat2()


def rename_noreplace(source: bytes, target: bytes) -> bool:
    """rename() that refuses an existing target (renameat2 RENAME_NOREPLACE): one directory
    change where link() and unlink() make two. False where the kernel or filesystem lacks it;
    ``FileExistsError`` if the target exists."""
    global _renameat2
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, source, _AT_FDCWD, target, _RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EEXIST:
        raise FileExistsError(err, os.strerror(err), target)
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        _renameat2 = None  # not here: link() and unlink() from now on
        return False
    raise OSError(err, os.strerror(err), target)


def current_umask() -> int:
    # The only way to read the umask is to set it; done once per restore, then put back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def unlink_quietly(path: bytes) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
