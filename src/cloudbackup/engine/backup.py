"""One backup run: scan the selection, store new content in the vault, publish a manifest.

The run has two phases. *Scan* lists every selected entry (no content read) so the totals are
known; *store* hashes each file and copies it into the vault only when the vault lacks that
content. The manifest is written last: a run that stops, crashes or raises leaves no snapshot.

A file whose content is new is read twice: once to hash it (so unchanged content costs no vault
writes at all), then again to copy it, storing the copy under the hash of the bytes actually
copied, so a file modified meanwhile is never stored under a stale digest. Files of at most
``BLOCK_SIZE`` bytes are kept in memory by the first read and never read twice.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, Literal

import msgspec

from cloudbackup.engine.errors import (
    FILE_UNREADABLE,
    BackupStopped,
    FileError,
    os_error,
    path_str,
)
from cloudbackup.engine.selection import Selection, SelectionItem
from cloudbackup.engine.snapshot import Entry, Manifest
from cloudbackup.engine.vault import BLOCK_SIZE, Vault, new_hasher
from cloudbackup.engine.walk import walk

Phase = Literal["preparing", "in_progress"]
_MIN_THROTTLED_BLOCK = 4096


class BackupProgress(msgspec.Struct, frozen=True):
    """Counters of a running backup at one instant.

    ``bytes_completed`` counts scanned bytes of the files already processed (hashed or failed),
    so it rises from 0 to ``total_bytes`` and never past it, even if files grow meanwhile.
    """

    files_searched: int
    bytes_searched: int
    files_backed_up: int
    bytes_backed_up: int
    bytes_completed: int
    total_bytes: int
    errors_count: int


class BackupResult(msgspec.Struct, frozen=True):
    """What a finished run reports; ``bytes_in_db`` is the manifest's size."""

    snapshot_id: int
    files_searched: int
    bytes_searched: int
    files_backed_up: int
    bytes_backed_up: int
    bytes_in_db: int
    errors: list[FileError]
    duration_seconds: float


def run_backup(
    vault: Vault,
    inclusions: Iterable[SelectionItem],
    exclusions: Iterable[SelectionItem],
    *,
    on_progress: Callable[[BackupProgress], None],
    should_stop: Callable[[], bool],
    on_phase: Callable[[Phase], None] | None = None,
    max_bps: int = 0,
) -> BackupResult:
    """Back up ``inclusions`` minus ``exclusions`` into ``vault`` as a new snapshot.

    ``on_progress`` and ``should_stop`` are called after every entry and after every block read
    (at most 1 MiB), so the caller must throttle any expensive reaction. ``max_bps`` > 0 caps the
    rate at which source bytes are processed: every byte counts once, on the hashing read; the
    copying re-read of new content (usually served from the page cache) is not slowed, so a run
    takes about ``bytes_searched / max_bps`` seconds.
    Per-path problems end up in ``errors``; a stop request raises :class:`BackupStopped`; any
    exception leaves no snapshot behind. The snapshot id is allocated just before the manifest
    is written, so ids follow completion order and failed runs use none. A malformed rule
    raises ``ValueError`` before any work starts.
    """
    started = time.monotonic()
    selection = Selection(inclusions, exclusions)
    # Backing up the vault into itself would grow it forever when it lies inside an inclusion.
    walked = selection.with_excluded_folders(
        {os.path.abspath(vault.root), os.path.realpath(vault.root)}
    )
    run = _Run(vault, on_progress, should_stop, max_bps)
    if on_phase is not None:
        on_phase("preparing")
    entries = run.scan(walked)
    if on_phase is not None:
        on_phase("in_progress")
    stored = run.store(entries)
    snapshot_id = vault.allocate()
    manifest = Manifest(
        snapshot_id=snapshot_id,
        created_ns=time.time_ns(),
        inclusions=list(selection.inclusions),
        exclusions=list(selection.exclusions),
        entries=stored,
        errors=run.errors,
    )
    manifest_size = vault.write_manifest(snapshot_id, manifest)
    return BackupResult(
        snapshot_id=snapshot_id,
        files_searched=run.files_searched,
        bytes_searched=run.bytes_searched,
        files_backed_up=run.files_backed_up,
        bytes_backed_up=run.bytes_backed_up,
        bytes_in_db=manifest_size,
        errors=run.errors,
        duration_seconds=time.monotonic() - started,
    )


class _SourceFailed(Exception):
    """Reading a source file failed: a per-file error, unlike a failure of the vault."""

    def __init__(self, error: FileError) -> None:
        super().__init__(error.description)
        self.error = error


class _Throttle:
    """Sleeps so that bytes read since the first read never exceed ``max_bps`` per second."""

    def __init__(self, max_bps: int) -> None:
        self.max_bps = max_bps
        self._start: float | None = None
        self._consumed = 0

    def consume(self, nbytes: int) -> None:
        if self.max_bps <= 0:
            return
        now = time.monotonic()
        if self._start is None:
            self._start = now
        self._consumed += nbytes
        ahead = self._start + self._consumed / self.max_bps - now
        if ahead > 0:
            time.sleep(ahead)


class _Run:
    """Mutable state of one run: counters, errors, callbacks and the read throttle."""

    def __init__(
        self,
        vault: Vault,
        on_progress: Callable[[BackupProgress], None],
        should_stop: Callable[[], bool],
        max_bps: int,
    ) -> None:
        self.vault = vault
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.throttle = _Throttle(max_bps)
        # Under a throttle, smaller reads keep progress reports and stop checks frequent.
        self.block_size = (
            BLOCK_SIZE if max_bps <= 0 else min(BLOCK_SIZE, max(_MIN_THROTTLED_BLOCK, max_bps // 4))
        )
        self.files_searched = 0
        self.bytes_searched = 0
        self.files_backed_up = 0
        self.bytes_backed_up = 0
        self.bytes_completed = 0
        self.errors: list[FileError] = []

    def checkpoint(self) -> None:
        self.on_progress(
            BackupProgress(
                files_searched=self.files_searched,
                bytes_searched=self.bytes_searched,
                files_backed_up=self.files_backed_up,
                bytes_backed_up=self.bytes_backed_up,
                bytes_completed=self.bytes_completed,
                total_bytes=self.bytes_searched,
                errors_count=len(self.errors),
            )
        )
        if self.should_stop():
            raise BackupStopped("stop requested")

    def scan(self, selection: Selection) -> list[Entry]:
        entries: list[Entry] = []
        for item in walk(selection):
            if isinstance(item, FileError):
                self.errors.append(item)
            else:
                entries.append(item)
                if item.kind == "file":
                    self.files_searched += 1
                    self.bytes_searched += item.size
            self.checkpoint()
        return entries

    def store(self, entries: list[Entry]) -> list[Entry]:
        stored: list[Entry] = []
        for entry in entries:
            if entry.kind != "file":
                stored.append(entry)
                continue
            done_before = self.bytes_completed
            try:
                stored.append(self._store_file(entry, done_before))
            except _SourceFailed as failed:
                self.errors.append(failed.error)
            self.bytes_completed = done_before + entry.size
            self.checkpoint()
        return stored

    def _store_file(self, entry: Entry, done_before: int) -> Entry:
        with _open_regular(entry.path) as source:
            st = os.fstat(source.fileno())
            hasher = new_hasher()
            hashed = 0
            # Up to BLOCK_SIZE bytes are kept from the hashing pass so small files are read once.
            kept: list[bytes] | None = []
            for block in self._read(source, entry, done_before):
                hasher.update(block)
                hashed += len(block)
                if kept is not None and hashed <= BLOCK_SIZE:
                    kept.append(block)
                else:
                    kept = None
            digest = hasher.hexdigest()
            if self.vault.has(digest):
                return _with_content(entry, st, digest, hashed)
            if kept is not None:
                result = self.vault.put_blocks(kept)
            else:
                source.seek(0)
                result = self.vault.put_blocks(self._read(source, entry, None))
        if result.stored:
            self.files_backed_up += 1
            self.bytes_backed_up += result.size
        return _with_content(entry, st, result.digest, result.size)

    def _read(self, source: BinaryIO, entry: Entry, done_before: int | None) -> Iterator[bytes]:
        """Yield the file's blocks with a checkpoint after each.

        ``done_before`` is set on the hashing pass only: that pass moves ``bytes_completed`` and
        is throttled; the copy pass re-reads bytes already counted and throttled once.
        """
        read = 0
        while True:
            try:
                block = source.read(self.block_size)
            except OSError as exc:
                raise _SourceFailed(os_error(entry.path, exc)) from exc
            if not block:
                return
            read += len(block)
            if done_before is not None:
                self.throttle.consume(len(block))
                self.bytes_completed = done_before + min(read, entry.size)
            yield block
            self.checkpoint()


def _open_regular(path: bytes) -> BinaryIO:
    """Open ``path`` for reading only if it is still a regular file (never through a link)."""
    # O_NONBLOCK: if the path became a FIFO since the scan, opening it must not hang the run.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _SourceFailed(_changed_kind(path, "a symbolic link")) from exc
        raise _SourceFailed(os_error(path, exc)) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _SourceFailed(_changed_kind(path, "not a regular file"))
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def _changed_kind(path: bytes, now: str) -> FileError:
    return FileError(
        path=path_str(path), type=FILE_UNREADABLE, description=f"was a file when scanned, now {now}"
    )


def _with_content(entry: Entry, st: os.stat_result, digest: str, size: int) -> Entry:
    # Metadata from the open file, not the scan: it belongs with the bytes that were stored.
    return msgspec.structs.replace(
        entry,
        digest=digest,
        size=size,
        mode=stat.S_IMODE(st.st_mode),
        mtime_ns=st.st_mtime_ns,
        uid=st.st_uid,
        gid=st.st_gid,
    )
