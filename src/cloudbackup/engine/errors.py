"""Per-path problems and the exceptions the engine raises.

A per-path problem (a missing inclusion, an unreadable file) never aborts a run: it becomes a
:class:`FileError` in the result and the run goes on. Only a stop request, a broken vault or a
bug propagates as an exception.
"""

from __future__ import annotations

import os
from typing import Final

import msgspec

# Error types of a backup (spec §6); the API reports them verbatim. A path found by the search
# that is gone when read is the spec's ``file_or_folder_missing``; an inclusion that is not there
# when the walk starts was never found, so it has its own type (docs/decisions.md).
FILE_OR_FOLDER_MISSING: Final = "file_or_folder_missing"
INCLUSION_MISSING: Final = "inclusion_missing"
FILE_UNREADABLE: Final = "file_unreadable"
# Error types of a restore.
FILE_EXISTS: Final = "file_exists"
FILE_UNWRITABLE: Final = "file_unwritable"
BLOB_MISSING: Final = "blob_missing"
BLOB_CORRUPT: Final = "blob_corrupt"
INVALID_ENTRY: Final = "invalid_entry"


class FileError(msgspec.Struct, frozen=True):
    """One problem with one path: the shape of a row of ``backup_errors``."""

    path: str
    type: str
    code: int | None = None
    description: str | None = None
    details: str | None = None


def path_str(path: bytes | str) -> str:
    r"""Render a path for reports: UTF-8, with undecodable bytes spelled ``\xff``.

    Not surrogate escapes: those cannot be encoded to UTF-8, so a JSON response or a database
    row holding one would fail. Reports are for people; manifests keep the exact bytes.
    """
    raw = path if isinstance(path, bytes) else os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")


def os_error(
    path: bytes | str, exc: OSError, *, missing_type: str = FILE_OR_FOLDER_MISSING
) -> FileError:
    """Classify an OS failure on ``path``: gone means ``missing_type``, anything else unreadable."""
    # NotADirectoryError: a component of the path was replaced by a file, so the path is gone too.
    missing = isinstance(exc, FileNotFoundError | NotADirectoryError)
    return FileError(
        path=path_str(path),
        type=missing_type if missing else FILE_UNREADABLE,
        code=exc.errno,
        description=exc.strerror or str(exc),
    )


class Stopped(Exception):
    """A run ended early because its ``should_stop`` callback said so."""


class BackupStopped(Stopped):
    """The backup was stopped; no manifest was written, so no snapshot exists."""


class RestoreStopped(Stopped):
    """The restore was stopped; what was restored so far stays on disk."""


class SnapshotNotFound(LookupError):
    """The vault holds no complete snapshot with that id."""


class VaultError(Exception):
    """The vault cannot be used as asked; the message is meant for people."""


class PasswordRequired(VaultError):
    """The vault is encrypted and no password was given."""


class VaultKeyMissing(PasswordRequired):
    """The vault is encrypted (or recorded so) and its key file is not in the key folder."""


class WrongPassword(VaultError):
    """The password does not open the vault."""


class NotEncrypted(VaultError):
    """A password was given for a vault that is not encrypted."""


class VaultLocked(VaultError):
    """Another process holds an exclusive lock on the vault (e.g. a prune is running)."""


class PruneStopped(Stopped):
    """The prune was stopped; the vault stays consistent."""


class VerifyStopped(Stopped):
    """The verification was stopped before every pack was read."""


class ChunkError(Exception):
    """A chunk could not be read back intact; ``kind`` is ``missing`` or ``corrupt``."""

    def __init__(self, chunk_id: bytes, kind: str, detail: str) -> None:
        super().__init__(f"chunk {chunk_id.hex()} is {kind}: {detail}")
        self.chunk_id = chunk_id
        self.kind = kind
