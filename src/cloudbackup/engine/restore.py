"""Rebuild a snapshot's tree on disk, byte-identical, with permission bits and mtimes.

Order matters: directories and files first, in manifest order (a directory before its contents);
then symbolic links, so a restored link can never redirect a later write of the same restore
outside the destination; then directory modes and mtimes, once nothing else will be created in
them: a new entry would bump the mtime and a read-only mode would block the writes.

Every file is written from its chunks (each one decrypted, decompressed and checked against its
id as it is read) as an unnamed file in its target directory (``O_TMPFILE``; where that is not
supported, under a temp name), then given its name: a target path only ever holds a complete,
verified file. The chunks of a batch of small files are read together, in few ranges of their
packs (``engine/restore_reads.py``); in a folder this restore made, nothing can already be
there, so a file's name is not looked up before it is written. A re-driven attempt (and, with
overwrite, any restore) keeps a file already in place that is provably the entry's
(``engine/restored_files.py``) and counts it restored without writing it again. Entries stream
from the snapshot's tree, so memory does not grow with the number of files (only directories
and links are kept for the final passes).
Ownership, extended attributes, hard links and sparseness are not restored.

Nothing is done by path below the destination (or, restoring in place, below the folder holding
each inclusion): every folder is opened from the one above it without following links
(``engine/dirfd.py``), and files, links and folder metadata are written through those
descriptors. A link where a folder is expected, made before the restore or during it, is a
per-file error for everything below it, never a way out of the destination.
"""

from __future__ import annotations

import os
import posixpath
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, NamedTuple

import msgspec

from cloudbackup.engine.dirfd import LIST, Folders, lexists_at, open_folder
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
from cloudbackup.engine.file_ops import (
    current_umask,
    link_unnamed,
    open_unnamed,
    place_at,
    unlink_quietly,
)
from cloudbackup.engine.restore_batches import FileBatches
from cloudbackup.engine.restore_reads import ChunkData, read_chunks
from cloudbackup.engine.restored_files import (
    TempNames,
    clear_leftovers,
    holds_entry,
    link_in_place,
)
from cloudbackup.engine.selection import is_within, normalize
from cloudbackup.engine.snapshot import Entry, SnapshotInfo
from cloudbackup.engine.vault import Vault

#: The callbacks run at most this often while entries are handed out (and at every wait)...
REPORT_SECONDS: Final = 0.02
#: ...and whenever this much more has been handed out: a caller that throttles by sleeping in
#: ``on_progress`` (``restore_max_bps``) still holds a fast restore to its pace.
REPORT_BYTES: Final = 1024 * 1024
#: Files up to this size have their chunks read with the rest of their batch's.
_GROUPED_FILE_BYTES: Final = 1024 * 1024


class _Target(NamedTuple):
    """Where an entry goes: its full path (for reports), the anchor folder it is reached from,
    the folder below the anchor holding it (b"" = the anchor) and its name (b"" = the anchor
    itself)."""

    path: bytes
    anchor: bytes
    folder: bytes
    name: bytes


class RestoreProgress(msgspec.Struct, frozen=True):
    """Counters of a running restore; ``bytes_completed`` includes the file being written.
    ``bytes_in_place`` is the part of ``bytes_restored`` found already restored (kept, not
    written: what a throttle of the writes leaves out)."""

    files_restored: int
    bytes_restored: int
    bytes_completed: int
    total_files: int
    total_bytes: int
    errors_count: int
    bytes_in_place: int = 0


class RestoreResult(msgspec.Struct, frozen=True):
    """What a finished restore reports: complete files and their bytes, plus per-path errors;
    ``files_in_place``/``bytes_in_place`` are the part of them found already restored."""

    files_restored: int
    bytes_restored: int
    errors: list[FileError]
    duration_seconds: float
    files_in_place: int = 0
    bytes_in_place: int = 0


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
    run_key: str | None = None,
) -> RestoreResult:
    """Restore snapshot ``snapshot_id`` below ``destination`` (or in place when it is None).

    An entry ``/a/b`` lands at ``destination/a/b``. An existing path is left alone and reported
    as ``file_exists`` unless ``overwrite``; existing directories are merged into either way
    (their mode and mtime set from the snapshot with ``overwrite`` or ``resume``).
    ``resume`` (a second attempt at the same restore) takes an existing file or link that is
    exactly what the entry would write (a regular file of the same size, mode, mtime and
    content, or a link to the same target) as written by the earlier attempt, not as a
    ``file_exists``; with ``overwrite`` such a file is kept rather than written again, resuming
    or not. Either way it counts as restored. ``run_key`` names the restore across its
    attempts: a resumed attempt removes the temp files earlier attempts of that key left.
    ``select``, when given, restores only the entries it returns True for (the totals then count
    the whole snapshot only if ``select`` is None). Raises :class:`SnapshotNotFound` for an
    unknown id and :class:`RestoreStopped` on a stop. Files are written by ``workers``
    threads (file creation is mostly system calls, which run outside the GIL); the callbacks
    are only ever called from the calling thread.
    """
    started = time.monotonic()
    info = vault.read_info(snapshot_id)
    run = _Restore(
        vault, destination, overwrite, on_progress, should_stop, resume=resume, run_key=run_key
    )
    run.inclusions = [normalize(item.path) for item in info.inclusions] or [b"/"]
    if select is None:
        run.total_files, run.total_bytes = info.files, info.file_bytes
    else:
        run.total_files, run.total_bytes = _count_selected(vault, info, select)

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="restore")
    try:
        try:
            batches = FileBatches(run.restore_files, run.checkpoint, pool, workers)
            dirs, links = _write_entries(vault, info, run, select, batches)
        except BaseException:
            run.stopping.set()  # files being written are abandoned (their temp files removed)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        for target, entry in links:
            run.make_link(target, entry)
        for target, entry in dirs:
            run.set_dir_metadata(target, entry)
    finally:
        run.folders.close()

    return RestoreResult(
        files_restored=run.files_restored,
        bytes_restored=run.bytes_restored,
        errors=run.errors,
        duration_seconds=time.monotonic() - started,
        files_in_place=run.files_in_place,
        bytes_in_place=run.bytes_in_place,
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
    files: FileBatches[_Target],
) -> tuple[list[tuple[_Target, Entry]], list[tuple[_Target, Entry]]]:
    """Make the directories and write the files, in walk order; returns the directories made
    (their metadata is set last) and the links to make (after every file)."""
    dirs: list[tuple[_Target, Entry]] = []
    links: list[tuple[_Target, Entry]] = []
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
            run.checkpoint_due()
        else:
            links.append((target, entry))
    files.finish()
    run.checkpoint()  # every file is written: the final counters
    return dirs, links


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
        run_key: str | None = None,
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
        self.files_in_place = 0  # of files_restored: found already restored, kept
        self.bytes_in_place = 0
        self.total_files = 0
        self.total_bytes = 0
        self.errors: list[FileError] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        # Open folders below the anchors, one cache per thread.
        self.folders = Folders()
        self.inclusions: list[bytes] = [b"/"]  # the snapshot's, set by restore_snapshot
        self.temp_names = TempNames(run_key)
        self.umask = current_umask()
        # Folders this restore created, as (anchor, relative path): nothing was there before.
        self.made: set[tuple[bytes, bytes]] = set()
        self._next_report = 0.0
        self._next_report_bytes = 0

    def checkpoint_due(self) -> None:
        """:meth:`checkpoint` if the last one was at least ``REPORT_SECONDS`` or
        ``REPORT_BYTES`` ago: the callbacks' cost does not grow with the number of files."""
        now = time.monotonic()
        handed_out = self.bytes_restored + self.bytes_in_flight
        if now >= self._next_report or handed_out >= self._next_report_bytes:
            self._next_report = now + REPORT_SECONDS
            self._next_report_bytes = handed_out + REPORT_BYTES
            self.checkpoint()

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
                    bytes_in_place=self.bytes_in_place,
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

    def target_of(self, entry: Entry) -> _Target | None:
        # A manifest is data read from disk: a path that is not plain absolute (".." included)
        # could otherwise escape the destination.
        try:
            valid = b"\0" not in entry.path and normalize(entry.path) == entry.path
        except ValueError:
            valid = False
        if not valid:
            self.fail(entry.path, INVALID_ENTRY, "not a normalized absolute path")
            return None
        roots = [root for root in self.inclusions if is_within(entry.path, root)]
        if not roots:
            # The backup never walked there: an edited manifest must not name any path.
            self.fail(entry.path, INVALID_ENTRY, "outside the snapshot's inclusions")
            return None
        if self.destination is None:
            # In place, the folder holding the inclusion is where the backup's walk started
            # (and what the allowed roots check); everything below it is reached without links.
            anchor = posixpath.dirname(min(roots, key=len))
            relative = entry.path[len(anchor) :].lstrip(b"/")
            path = entry.path
        else:
            anchor = self.destination
            relative = entry.path.lstrip(b"/")
            path = os.path.join(anchor, relative) if relative else anchor
        folder, _, name = relative.rpartition(b"/")
        return _Target(path, anchor, folder, name)

    def make_dir(self, target: _Target) -> bool:
        """Ensure a directory exists; True when its metadata should be set from the snapshot."""
        try:
            if target.name:
                parent: int | None = self.folders.cache().folder(
                    target.anchor, target.folder, create=True
                )
                name = target.name
            else:  # the snapshot's "/" at the destination itself: by path, as checked
                parent, name = None, target.path
            try:
                existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                try:
                    if parent is None:
                        os.makedirs(name)
                    else:
                        os.mkdir(name, 0o777, dir_fd=parent)
                        self.made.add((target.anchor, posixpath.join(target.folder, name)))
                    return True
                except FileExistsError:  # made meanwhile: judge what is there now
                    existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if stat.S_ISDIR(existing.st_mode):
                if self.resume:  # before any file of this attempt is written in it
                    self._clear_leftovers(target)
                # Resuming, it is most likely the earlier attempt's, its metadata never set.
                return self.overwrite or self.resume
            if not self.overwrite:
                self.fail(target.path, FILE_EXISTS, "exists and is not a directory")
                return False
            os.unlink(name, dir_fd=parent)  # a link is replaced, never followed
            os.mkdir(name, 0o777, dir_fd=parent)
            return True
        except OSError as exc:
            self.fail_os(target.path, exc)
            return False

    def restore_files(self, batch: list[tuple[_Target, Entry]]) -> None:
        """Write a batch of files in order (in a worker thread); stops early on a stop. The
        chunks of its small files are read together first; resuming or overwriting, only
        those of files not found in place."""
        if self.resume or self.overwrite:
            to_write: list[tuple[_Target, Entry, int | None]] = []
            for target, entry in batch:
                if self.stopping.is_set():
                    return
                found = self._to_write(target, entry)
                if found is not None:
                    to_write.append((target, entry, found[0]))
            chunks = self._read_grouped([entry for _target, entry, _parent in to_write])
            for target, entry, parent in to_write:
                if self.stopping.is_set():
                    return
                self._write_file(target, entry, parent, chunks)
            return
        chunks = self._read_grouped([entry for _target, entry in batch])
        for target, entry in batch:
            if self.stopping.is_set():
                return
            self.restore_file(target, entry, chunks)

    def _read_grouped(self, entries: list[Entry]) -> dict[bytes, ChunkData]:
        """The chunks of the small files among ``entries``, read in few ranges."""
        grouped = [
            chunk_id
            for entry in entries
            if entry.size <= _GROUPED_FILE_BYTES
            for chunk_id in entry.chunks
        ]
        return read_chunks(self.vault, grouped) if len(grouped) > 1 else {}

    def restore_file(
        self, target: _Target, entry: Entry, chunks: dict[bytes, ChunkData] | None = None
    ) -> None:
        """Write one file (in a worker thread); never calls the callbacks. ``chunks`` holds
        some of its chunks already read."""
        found = self._to_write(target, entry)
        if found is not None:
            self._write_file(target, entry, found[0], chunks or {})

    def _to_write(self, target: _Target, entry: Entry) -> tuple[int | None] | None:
        """Whether ``entry`` is to be written, and then the open folder it goes in (None while
        that does not exist); None when it is done with (kept in place, or an error)."""
        if not target.name:
            self.fail(target.path, INVALID_ENTRY, "only a folder can be restored here")
            return None
        try:
            parent = self._existing_folder(target)
        except OSError as exc:
            self.fail_os(target.path, exc)
            return None
        # In a folder this restore made, only what it wrote there can be (or an intruder's
        # file, which the no-replace placing refuses as having appeared meanwhile).
        if parent is not None and (target.anchor, target.folder) not in self.made:
            if (self.resume or self.overwrite) and holds_entry(
                self.vault, parent, target.name, entry
            ):
                with self._lock:
                    self.files_restored += 1
                    self.bytes_restored += entry.size
                    self.files_in_place += 1
                    self.bytes_in_place += entry.size
                return None
            if not self.overwrite and lexists_at(parent, target.name):
                self.fail(target.path, FILE_EXISTS, "already exists")
                return None
        if entry.size and not entry.chunks:
            self.fail(target.path, INVALID_ENTRY, "file entry without content chunks")
            return None
        return (parent,)

    def _clear_leftovers(self, target: _Target) -> None:
        """Remove what earlier attempts of this run left half-written in folder ``target``."""
        relative = posixpath.join(target.folder, target.name) if target.name else b""
        try:
            folder = self.folders.cache().folder(target.anchor, relative, create=False)
        except OSError:
            return  # not reachable: writing into it fails, and says why, file by file
        clear_leftovers(folder, self.temp_names)

    def _existing_folder(self, target: _Target) -> int | None:
        """The open folder that holds ``target``; None while it does not exist."""
        try:
            return self.folders.cache().folder(target.anchor, target.folder, create=False)
        except FileNotFoundError:
            return None

    def _write_file(
        self, target: _Target, entry: Entry, parent: int | None, chunks: dict[bytes, ChunkData]
    ) -> None:
        """Write a file unnamed (or to a temp name) beside its target, then give it its name;
        ``chunks`` holds some of its chunks already read."""
        tmp: bytes | None = None
        placed = False
        written = [0]
        try:
            if parent is None:
                parent = self.folders.cache().folder(target.anchor, target.folder, create=True)
            # Created with its final permissions when the umask lets them through (saves a
            # chmod per file); special bits and masked ones are set explicitly below.
            exact = entry.mode & 0o7000 == 0 and entry.mode & self.umask == 0
            create_mode = entry.mode if exact else 0o600
            fd = open_unnamed(parent, create_mode)
            if fd is None:
                tmp = self.temp_names.next(target.name)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = os.open(tmp, flags, create_mode, dir_fd=parent)
            try:
                if not self._copy_verified(fd, target.path, entry, written, chunks):
                    return
                if not exact:
                    os.fchmod(fd, entry.mode)
                # After the last write: closing does not touch the mtime again.
                os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
                if tmp is None:
                    placed = self._name_unnamed(fd, parent, target.name)
            finally:
                os.close(fd)
            if tmp is not None:
                placed = place_at(parent, tmp, target.name, replace=self.overwrite)
            if not placed:
                self.fail(target.path, FILE_EXISTS, "appeared during the restore")
        except OSError as exc:
            self.fail_os(target.path, exc)
        finally:
            if not placed and tmp is not None and parent is not None:
                unlink_quietly(tmp, dir_fd=parent)
            with self._lock:
                self.bytes_in_flight -= written[0]
                if placed:
                    self.files_restored += 1
                    self.bytes_restored += entry.size

    def _name_unnamed(self, fd: int, parent: int, name: bytes) -> bool:
        """Give the complete unnamed file ``fd`` its name; with overwrite, replacing what is
        there (through a temp name: a link cannot replace)."""
        if link_unnamed(fd, parent, name):
            return True
        if not self.overwrite:
            return False
        tmp = self.temp_names.next(name)
        if not link_unnamed(fd, parent, tmp):
            return False
        try:
            os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except OSError:
            unlink_quietly(tmp, dir_fd=parent)
            raise
        return True

    def _copy_verified(
        self,
        fd: int,
        target: bytes,
        entry: Entry,
        written: list[int],
        chunks: dict[bytes, ChunkData],
    ) -> bool:
        """Write a file's chunks, each checked on read; on a problem report it, return False.
        ``written[0]`` counts the bytes written (and reported in flight) so far."""
        if len(entry.chunks) == 1 and entry.chunks[0] in chunks:
            # A small file read with its batch: one write, no progress while it lasts.
            data = chunks[entry.chunks[0]]
            if isinstance(data, ChunkError):
                return self._chunk_failed(target, data)
            if len(data) != entry.size:
                return self._size_wrong(target, len(data), entry.size)
            _write_all(fd, data)
            return True
        total = 0
        for chunk_id in entry.chunks:
            if self.stopping.is_set():
                return False
            found = chunks.get(chunk_id)
            try:
                if found is None:
                    found = self.vault.read_chunk(chunk_id)
                elif isinstance(found, ChunkError):
                    raise found
            except ChunkError as exc:
                return self._chunk_failed(target, exc)
            _write_all(fd, found)
            total += len(found)
            counted = min(len(found), max(entry.size - written[0], 0))
            written[0] += counted
            with self._lock:
                self.bytes_in_flight += counted
            if total > entry.size:
                break
        if total != entry.size:
            return self._size_wrong(target, total, entry.size)
        return True

    def _chunk_failed(self, target: bytes, exc: ChunkError) -> bool:
        kind = BLOB_MISSING if exc.kind == "missing" else BLOB_CORRUPT
        self.fail(target, kind, f"content chunk {exc.chunk_id.hex()} is {exc.kind}")
        return False

    def _size_wrong(self, target: bytes, total: int, size: int) -> bool:
        self.fail(target, BLOB_CORRUPT, f"content is {total} bytes, expected {size}")
        return False

    def make_link(self, target: _Target, entry: Entry) -> None:
        if entry.target is None:
            self.fail(target.path, INVALID_ENTRY, "symbolic link entry without target")
            return
        if not target.name:
            self.fail(target.path, INVALID_ENTRY, "only a folder can be restored here")
            return
        name = target.name
        try:
            parent = self.folders.cache().folder(target.anchor, target.folder, create=True)
            if self.overwrite:
                # Build aside then rename: the old entry is replaced atomically (not a directory).
                tmp = self.temp_names.next(name)
                os.symlink(entry.target, tmp, dir_fd=parent)
                try:
                    os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
                except OSError:
                    unlink_quietly(tmp, dir_fd=parent)
                    raise
            elif self.resume and link_in_place(parent, name, entry):
                return
            else:
                os.symlink(entry.target, name, dir_fd=parent)
            times = (entry.mtime_ns, entry.mtime_ns)
            os.utime(name, ns=times, dir_fd=parent, follow_symlinks=False)
        except OSError as exc:
            self.fail_os(target.path, exc)

    def set_dir_metadata(self, target: _Target, entry: Entry) -> None:
        times = (entry.mtime_ns, entry.mtime_ns)
        try:
            # Through the folder's own descriptor: chmod on Linux cannot refuse to follow a link.
            if target.name:
                parent = self.folders.cache().folder(target.anchor, target.folder, create=False)
                fd = open_folder(parent, target.name, target.path, LIST)
            else:  # the destination itself, as given
                fd = os.open(target.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fchmod(fd, entry.mode)
                os.utime(fd, ns=times)
            finally:
                os.close(fd)
        except OSError as exc:
            self.fail_os(target.path, exc)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
