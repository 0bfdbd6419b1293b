"""Rebuild a snapshot's tree on disk, byte-identical, with permission bits and mtimes.

Order matters: directories and files first, in manifest order (a directory before its contents);
then symbolic links, so a restored link can never redirect a later write of the same restore
outside the destination; then directory modes and mtimes, once nothing else will be created in
them: a new entry would bump the mtime and a read-only mode would block the writes.

Every file is written to a temp name in its target directory, checked against the snapshot's
blake3 digest while being written, then moved into place: a target path only ever holds a complete
file. Ownership, extended attributes, hard links and sparseness are not restored.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Final

import msgspec

from cloudbackup.engine.errors import (
    BLOB_CORRUPT,
    BLOB_MISSING,
    FILE_EXISTS,
    FILE_UNWRITABLE,
    INVALID_ENTRY,
    FileError,
    RestoreStopped,
    path_str,
)
from cloudbackup.engine.selection import normalize
from cloudbackup.engine.snapshot import Entry
from cloudbackup.engine.vault import BLOCK_SIZE, Vault, new_hasher

# os.link fails with these where hard links are unsupported; then rename is the fallback.
_NO_HARDLINKS: Final = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK})


class RestoreProgress(msgspec.Struct, frozen=True):
    """Counters of a running restore; ``bytes_completed`` includes the file being written."""

    files_restored: int
    bytes_restored: int
    bytes_completed: int
    total_files: int
    total_bytes: int
    errors_count: int


class RestoreResult(msgspec.Struct, frozen=True):
    """What a finished restore reports: complete files and their bytes, plus per-path errors."""

    files_restored: int
    bytes_restored: int
    errors: list[FileError]
    duration_seconds: float


def restore_snapshot(
    vault: Vault,
    snapshot_id: int,
    destination: Path | None,
    *,
    overwrite: bool = False,
    on_progress: Callable[[RestoreProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RestoreResult:
    """Restore snapshot ``snapshot_id`` below ``destination`` (or in place when it is None).

    An entry ``/a/b`` lands at ``destination/a/b``. An existing path is left alone and reported
    as ``file_exists`` unless ``overwrite``; existing directories are merged into either way.
    Raises :class:`SnapshotNotFound` for an unknown id and :class:`RestoreStopped` on a stop.
    """
    started = time.monotonic()
    manifest = vault.read_manifest(snapshot_id)
    run = _Restore(vault, destination, overwrite, on_progress, should_stop)
    files = [e for e in manifest.entries if e.kind == "file"]
    run.total_files = len(files)
    run.total_bytes = sum(e.size for e in files)

    dirs: list[tuple[bytes, Entry]] = []
    links: list[tuple[bytes, Entry]] = []
    for entry in manifest.entries:
        target = run.target_of(entry)
        if target is None:
            continue
        if entry.kind == "dir":
            if run.make_dir(target):
                dirs.append((target, entry))
        elif entry.kind == "file":
            run.restore_file(target, entry)
            run.checkpoint()
        else:
            links.append((target, entry))
    for target, entry in links:
        run.make_link(target, entry)
    for target, entry in dirs:
        run.set_dir_metadata(target, entry)

    return RestoreResult(
        files_restored=run.files_restored,
        bytes_restored=run.bytes_restored,
        errors=run.errors,
        duration_seconds=time.monotonic() - started,
    )


class _Restore:
    """Mutable state of one restore: counters, errors and callbacks."""

    def __init__(
        self,
        vault: Vault,
        destination: Path | None,
        overwrite: bool,
        on_progress: Callable[[RestoreProgress], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.vault = vault
        self.destination = None if destination is None else os.fsencode(destination)
        self.overwrite = overwrite
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.files_restored = 0
        self.bytes_restored = 0
        self.bytes_in_flight = 0
        self.total_files = 0
        self.total_bytes = 0
        self.errors: list[FileError] = []

    def checkpoint(self) -> None:
        if self.on_progress is not None:
            self.on_progress(
                RestoreProgress(
                    files_restored=self.files_restored,
                    bytes_restored=self.bytes_restored,
                    bytes_completed=self.bytes_restored + self.bytes_in_flight,
                    total_files=self.total_files,
                    total_bytes=self.total_bytes,
                    errors_count=len(self.errors),
                )
            )
        if self.should_stop is not None and self.should_stop():
            raise RestoreStopped("stop requested")

    def fail(self, target: bytes, kind: str, description: str, code: int | None = None) -> None:
        self.errors.append(
            FileError(path=path_str(target), type=kind, code=code, description=description)
        )

    def fail_os(self, target: bytes, exc: OSError) -> None:
        kind = FILE_EXISTS if isinstance(exc, FileExistsError) else FILE_UNWRITABLE
        self.fail(target, kind, exc.strerror or str(exc), exc.errno)

    def target_of(self, entry: Entry) -> bytes | None:
        # A manifest is data read from disk: a path that is not plain absolute (".." included)
        # could otherwise escape the destination.
        try:
            valid = b"\0" not in entry.path and normalize(entry.path) == entry.path
        except ValueError:
            valid = False
        if not valid:
            self.fail(entry.path, INVALID_ENTRY, "not a normalized absolute path")
            return None
        if self.destination is None:
            return entry.path
        relative = entry.path.lstrip(b"/")
        return os.path.join(self.destination, relative) if relative else self.destination

    def make_dir(self, target: bytes) -> bool:
        """Ensure a directory exists; True when its metadata should be set from the snapshot."""
        try:
            try:
                existing = os.lstat(target)
            except FileNotFoundError:
                os.makedirs(target, exist_ok=True)
                return True
            if stat.S_ISDIR(existing.st_mode):
                return self.overwrite
            if not self.overwrite:
                self.fail(target, FILE_EXISTS, "exists and is not a directory")
                return False
            os.unlink(target)
            os.mkdir(target)
            return True
        except OSError as exc:
            self.fail_os(target, exc)
            return False

    def restore_file(self, target: bytes, entry: Entry) -> None:
        if not self.overwrite and os.path.lexists(target):
            self.fail(target, FILE_EXISTS, "already exists")
            return
        if entry.digest is None:
            self.fail(target, INVALID_ENTRY, "file entry without content digest")
            return
        try:
            blob = self.vault.open_blob(entry.digest)
        except (FileNotFoundError, ValueError):
            self.fail(target, BLOB_MISSING, f"content {entry.digest} is not in the vault")
            return
        parent, name = os.path.split(target)
        tmp = os.path.join(parent, b"." + name[:200] + b".restore-" + secrets.token_hex(4).encode())
        placed = False
        try:
            with blob:
                os.makedirs(parent, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    if not self._copy_verified(blob, out, target, entry):
                        return
                    out.flush()
                    os.fchmod(out.fileno(), entry.mode)
                    # After the last write: closing does not touch the mtime again.
                    os.utime(out.fileno(), ns=(entry.mtime_ns, entry.mtime_ns))
            placed = self._place(tmp, target)
        except OSError as exc:
            self.fail_os(target, exc)
        finally:
            self.bytes_in_flight = 0
            if not placed:
                _unlink_quietly(tmp)
        if placed:
            self.files_restored += 1
            self.bytes_restored += entry.size

    def _copy_verified(self, blob: BinaryIO, out: BinaryIO, target: bytes, entry: Entry) -> bool:
        """Copy a blob, hashing what is written; on a mismatch report it and return False."""
        hasher = new_hasher()
        written = 0
        for block in iter(lambda: blob.read(BLOCK_SIZE), b""):
            hasher.update(block)
            out.write(block)
            written += len(block)
            self.bytes_in_flight = min(written, entry.size)
            self.checkpoint()
        if written != entry.size or hasher.hexdigest() != entry.digest:
            self.fail(target, BLOB_CORRUPT, f"content {entry.digest} in the vault is damaged")
            return False
        return True

    def _place(self, tmp: bytes, target: bytes) -> bool:
        """Move a complete temp file to ``target``; without overwrite, never replace anything."""
        if self.overwrite:
            os.replace(tmp, target)
            return True
        try:
            # link() refuses an existing target atomically, unlike rename().
            os.link(tmp, target)
        except FileExistsError:
            self.fail(target, FILE_EXISTS, "appeared during the restore")
            return False
        except OSError as exc:
            if exc.errno not in _NO_HARDLINKS or os.path.lexists(target):
                raise
            os.rename(tmp, target)
            return True
        os.unlink(tmp)
        return True

    def make_link(self, target: bytes, entry: Entry) -> None:
        if entry.target is None:
            self.fail(target, INVALID_ENTRY, "symbolic link entry without target")
            return
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if self.overwrite:
                # Build aside then rename: the old entry is replaced atomically (not a directory).
                tmp = target + b".restore-" + secrets.token_hex(4).encode()
                os.symlink(entry.target, tmp)
                try:
                    os.replace(tmp, target)
                except OSError:
                    _unlink_quietly(tmp)
                    raise
            else:
                os.symlink(entry.target, target)
            os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
        except OSError as exc:
            self.fail_os(target, exc)

    def set_dir_metadata(self, target: bytes, entry: Entry) -> None:
        try:
            os.chmod(target, entry.mode)
            os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns))
        except OSError as exc:
            self.fail_os(target, exc)


def _unlink_quietly(path: bytes) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
