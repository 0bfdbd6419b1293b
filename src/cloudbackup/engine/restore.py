"""Rebuild a snapshot's tree on disk, byte-identical, with permission bits and mtimes.

Order matters: directories and files first, in manifest order (a directory before its contents);
then symbolic links, so a restored link can never redirect a later write of the same restore
outside the destination; then directory modes and mtimes, once nothing else will be created in
them: a new entry would bump the mtime and a read-only mode would block the writes.

Every file is written to a temp name in its target directory from its chunks (each one decrypted,
decompressed and checked against its id as it is read), then moved into place: a target path only
ever holds a complete, verified file. Entries stream from the snapshot's tree, so memory does not
grow with the number of files (only directories and links are kept for the final passes).
Ownership, extended attributes, hard links and sparseness are not restored.
"""

from __future__ import annotations

import errno
import itertools
import os
import secrets
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Final

import msgspec

from cloudbackup.engine.errors import (
    BLOB_CORRUPT,
    BLOB_MISSING,
    FILE_EXISTS,
    FILE_UNWRITABLE,
    INVALID_ENTRY,
    ChunkError,
    FileError,
    RestoreStopped,
    path_str,
)
from cloudbackup.engine.file_ops import current_umask, rename_noreplace, unlink_quietly
from cloudbackup.engine.selection import normalize
from cloudbackup.engine.snapshot import Entry, SnapshotInfo
from cloudbackup.engine.vault import Vault

#: Bytes of files handed to the writer threads and not yet finished, at most (but one batch).
_AHEAD_BYTES: Final = 2 * 1024 * 1024
#: A batch of files for one thread: this many files, or this many bytes.
_BATCH_FILES: Final = 64
_BATCH_BYTES: Final = 512 * 1024
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
    resume: bool = False,
    on_progress: Callable[[RestoreProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    select: Callable[[Entry], bool] | None = None,
    workers: int = 4,
) -> RestoreResult:
    """Restore snapshot ``snapshot_id`` below ``destination`` (or in place when it is None).

    An entry ``/a/b`` lands at ``destination/a/b``. An existing path is left alone and reported
    as ``file_exists`` unless ``overwrite``; existing directories are merged into either way.
    ``resume`` (a second attempt at the same restore) takes an existing file or link that is
    exactly what the entry would write (a regular file of the same size, mode and mtime, or a
    link to the same target) as written by the earlier attempt, not as a ``file_exists``.
    ``select``, when given, restores only the entries it returns True for (the totals then count
    the whole snapshot only if ``select`` is None). Raises :class:`SnapshotNotFound` for an
    unknown id and :class:`RestoreStopped` on a stop. Files are written by ``workers``
    threads (file creation is mostly system calls, which run outside the GIL); the callbacks
    are only ever called from the calling thread.
    """
    started = time.monotonic()
    info = vault.read_info(snapshot_id)
    run = _Restore(vault, destination, overwrite, on_progress, should_stop, resume=resume)
    run.inclusions = [normalize(item.path) for item in info.inclusions] or [b"/"]
    if select is None:
        run.total_files, run.total_bytes = info.files, info.file_bytes
    else:
        run.total_files, run.total_bytes = _count_selected(vault, info, select)

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="restore")
    try:
        dirs, links = _write_entries(vault, info, run, select, _FileBatches(run, pool, workers))
    except BaseException:
        run.stopping.set()  # files being written are abandoned (their temp files removed)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
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


def _count_selected(
    vault: Vault, info: SnapshotInfo, select: Callable[[Entry], bool]
) -> tuple[int, int]:
    """The files ``select`` takes, and their bytes."""
    files = size = 0
    for entry in vault.iter_entries(info):
        if entry.kind == "file" and select(entry):
            files += 1
            size += entry.size
    return files, size


def _write_entries(
    vault: Vault,
    info: SnapshotInfo,
    run: _Restore,
    select: Callable[[Entry], bool] | None,
    files: _FileBatches,
) -> tuple[list[tuple[bytes, Entry]], list[tuple[bytes, Entry]]]:
    """Make the directories and write the files, in walk order; returns the directories made
    (their metadata is set last) and the links to make (after every file)."""
    dirs: list[tuple[bytes, Entry]] = []
    links: list[tuple[bytes, Entry]] = []
    for entry in vault.iter_entries(info):
        if select is not None and not select(entry):
            continue
        target = run.target_of(entry)
        if target is None:
            continue
        if entry.kind == "dir":
            # Before any file inside it: walk order puts a directory before its contents.
            if run.make_dir(target):
                dirs.append((target, entry))
        elif entry.kind == "file":
            files.add(target, entry)
            run.checkpoint()
        else:
            links.append((target, entry))
    files.finish()
    run.checkpoint()  # every file is written: the final counters
    return dirs, links


class _FileBatches:
    """Hands files to the writer threads in batches: one hand-over (and its thread wake-ups)
    per batch rather than per file, which a restore of many small files would pay dearly."""

    def __init__(self, run: _Restore, pool: ThreadPoolExecutor, workers: int) -> None:
        self.run = run
        self.pool = pool
        self.workers = workers
        self.pending: deque[tuple[Future[None], int]] = deque()
        self.batch: list[tuple[bytes, Entry]] = []
        self.batch_bytes = 0

    def add(self, target: bytes, entry: Entry) -> None:
        self.batch.append((target, entry))
        self.batch_bytes += entry.size
        if len(self.batch) >= _BATCH_FILES or self.batch_bytes >= _BATCH_BYTES:
            self.hand_over()

    def hand_over(self) -> None:
        if self.batch:
            self.pending.append(
                (self.pool.submit(self.run.restore_files, self.batch), self.batch_bytes)
            )
            self.batch, self.batch_bytes = [], 0
        # Few batches and few bytes ahead of the callbacks: a caller that throttles by
        # sleeping in on_progress still holds the restore to its pace.
        pending = self.pending
        while pending and (
            len(pending) > 2 * self.workers
            or sum(size for _f, size in pending) > _AHEAD_BYTES
            or pending[0][0].done()
        ):
            _wait_first(pending, self.run)

    def finish(self) -> None:
        """Hand over the last batch and wait for every file to be written."""
        self.hand_over()
        while self.pending:
            _wait_first(self.pending, self.run)


def _wait_first(pending: deque[tuple[Future[None], int]], run: _Restore) -> None:
    """Wait for the oldest file to be written, reporting progress (and stops) meanwhile."""
    while True:
        try:
            pending[0][0].result(timeout=0.2)
        except FutureTimeout:
            run.checkpoint()
            continue
        pending.popleft()
        return


class _Restore:
    """Mutable state of one restore: counters, errors and callbacks."""

    def __init__(
        self,
        vault: Vault,
        destination: Path | None,
        overwrite: bool,
        on_progress: Callable[[RestoreProgress], None] | None,
        should_stop: Callable[[], bool] | None,
        *,
        resume: bool = False,
    ) -> None:
        self.vault = vault
        self.destination = None if destination is None else os.fsencode(destination)
        self.overwrite = overwrite
        self.resume = resume
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.files_restored = 0
        self.bytes_restored = 0
        self.bytes_in_flight = 0
        self.total_files = 0
        self.total_bytes = 0
        self.errors: list[FileError] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        # Directories known to exist, so files skip a makedirs (several system calls) each.
        self.known_dirs: set[bytes] = set()
        self.inclusions: list[bytes] = [b"/"]  # the snapshot's, set by restore_snapshot
        self.tag = secrets.token_hex(4).encode()
        self.counter = itertools.count()
        self.umask = current_umask()

    def checkpoint(self) -> None:
        if self.on_progress is not None:
            with self._lock:
                progress = RestoreProgress(
                    files_restored=self.files_restored,
                    bytes_restored=self.bytes_restored,
                    bytes_completed=self.bytes_restored + self.bytes_in_flight,
                    total_files=self.total_files,
                    total_bytes=self.total_bytes,
                    errors_count=len(self.errors),
                )
            self.on_progress(progress)
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
        if not self.is_included(entry.path):
            # The backup never walked there: an edited manifest must not name any path.
            self.fail(entry.path, INVALID_ENTRY, "outside the snapshot's inclusions")
            return None
        if self.destination is None:
            return entry.path
        relative = entry.path.lstrip(b"/")
        return os.path.join(self.destination, relative) if relative else self.destination

    def is_included(self, path: bytes) -> bool:
        """Whether ``path`` is one of the snapshot's inclusions or lies inside one."""
        return any(
            root == b"/" or path == root or path.startswith(root + b"/") for root in self.inclusions
        )

    def make_dir(self, target: bytes) -> bool:
        """Ensure a directory exists; True when its metadata should be set from the snapshot."""
        try:
            try:
                existing = os.lstat(target)
            except FileNotFoundError:
                os.makedirs(target, exist_ok=True)
                self.known_dirs.add(target)
                return True
            if stat.S_ISDIR(existing.st_mode):
                self.known_dirs.add(target)
                return self.overwrite
            if not self.overwrite:
                self.fail(target, FILE_EXISTS, "exists and is not a directory")
                return False
            os.unlink(target)
            os.mkdir(target)
            self.known_dirs.add(target)
            return True
        except OSError as exc:
            self.fail_os(target, exc)
            return False

    def restore_files(self, batch: list[tuple[bytes, Entry]]) -> None:
        """Write a batch of files in order (in a worker thread); stops early on a stop."""
        for target, entry in batch:
            if self.stopping.is_set():
                return
            self.restore_file(target, entry)

    def restore_file(self, target: bytes, entry: Entry) -> None:
        """Write one file (in a worker thread); never calls the callbacks."""
        if not self.overwrite and os.path.lexists(target):
            if self.resume and _written_before(target, entry):
                with self._lock:
                    self.files_restored += 1
                    self.bytes_restored += entry.size
            else:
                self.fail(target, FILE_EXISTS, "already exists")
            return
        if entry.size and not entry.chunks:
            self.fail(target, INVALID_ENTRY, "file entry without content chunks")
            return
        parent, name = os.path.split(target)
        tmp: bytes | None = None
        placed = False
        written = [0]
        try:
            if parent not in self.known_dirs:
                os.makedirs(parent, exist_ok=True)
                self.known_dirs.add(parent)
            # A unique temp name without a system call per file (no fresh random bytes).
            tmp = b"%s/.%s.restore-%s-%d" % (parent, name[:200], self.tag, next(self.counter))
            # Created with its final permissions when the umask lets them through (saves a
            # chmod per file); special bits and masked ones are set explicitly below.
            exact = entry.mode & 0o7000 == 0 and entry.mode & self.umask == 0
            create_mode = entry.mode if exact else 0o600
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(tmp, flags, create_mode)
            try:
                if not self._copy_verified(fd, target, entry, written):
                    return
                if not exact:
                    os.fchmod(fd, entry.mode)
                # After the last write: closing does not touch the mtime again.
                os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
            finally:
                os.close(fd)
            placed = self._place(tmp, target)
        except OSError as exc:
            self.fail_os(target, exc)
        finally:
            if not placed and tmp is not None:
                unlink_quietly(tmp)
            with self._lock:
                self.bytes_in_flight -= written[0]
                if placed:
                    self.files_restored += 1
                    self.bytes_restored += entry.size

    def _copy_verified(self, fd: int, target: bytes, entry: Entry, written: list[int]) -> bool:
        """Write a file's chunks, each checked on read; on a problem report it, return False.
        ``written[0]`` counts the bytes written (and reported in flight) so far."""
        total = 0
        for chunk_id in entry.chunks:
            if self.stopping.is_set():
                return False
            try:
                data = self.vault.read_chunk(chunk_id)
            except ChunkError as exc:
                kind = BLOB_MISSING if exc.kind == "missing" else BLOB_CORRUPT
                self.fail(target, kind, f"content chunk {chunk_id.hex()} is {exc.kind}")
                return False
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            total += len(data)
            counted = min(len(data), max(entry.size - written[0], 0))
            written[0] += counted
            with self._lock:
                self.bytes_in_flight += counted
            if total > entry.size:
                break
        if total != entry.size:
            self.fail(target, BLOB_CORRUPT, f"content is {total} bytes, expected {entry.size}")
            return False
        return True

    def _place(self, tmp: bytes, target: bytes) -> bool:
        """Move a complete temp file to ``target``; without overwrite, never replace anything."""
        if self.overwrite:
            os.replace(tmp, target)
            return True
        try:
            if rename_noreplace(tmp, target):
                return True
        except FileExistsError:
            self.fail(target, FILE_EXISTS, "appeared during the restore")
            return False
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
                    unlink_quietly(tmp)
                    raise
            elif self.resume and _written_before(target, entry):
                return
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


def _written_before(target: bytes, entry: Entry) -> bool:
    """Whether ``target`` is what restoring ``entry`` writes: a file of the same size, mode and
    mtime, or a link with the same target (what an earlier attempt left behind)."""
    try:
        info = os.lstat(target)
        if entry.kind == "symlink":
            return stat.S_ISLNK(info.st_mode) and os.readlink(target) == entry.target
    except OSError:
        return False
    return (
        entry.kind == "file"
        and stat.S_ISREG(info.st_mode)
        and info.st_size == entry.size
        and stat.S_IMODE(info.st_mode) == entry.mode
        and info.st_mtime_ns == entry.mtime_ns
    )
