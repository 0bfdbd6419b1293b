"""One backup run: scan the selection, store new chunks in the vault, publish a snapshot.

The run has two phases. *Scan* walks the selection without reading any content, so the totals
are known early. *Store* walks it again and, file by file, either reuses the previous snapshot's
chunk list (same size, mtime and inode: the file is not read at all) or reads the file once,
cutting it into content-defined chunks. Chunks are hashed, deduplicated, compressed, sealed and
packed by a thread pool while the main thread reads on (hashing, zstd, AES and the chunker all
release the GIL), with a bounded number of chunks in flight, so memory stays flat whatever the
file sizes. Entries stream into the snapshot's tree in walk order.

The snapshot object is written last, after every pack and index it depends on: a run that stops,
crashes or raises leaves no snapshot. Given a ``checkpoint`` key, what it stored is indexed and
its finished files recorded every few seconds (``engine.checkpoints``), and once more when it
stops or fails, so the next attempt, or the next run of the same inclusions, skips them. A lease
lock announces the run to ``prune`` from before the index is read until the snapshot exists.

The module is over 500 lines on purpose: the archiver's scan, store, chunk pipeline, reporting
and checkpoints share one run's state; split apart, each piece would take all of it as arguments.
"""

from __future__ import annotations

import os
import stat
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final, Literal

import msgspec

from cloudbackup.engine.backup_results import BackupProgress, BackupResult
from cloudbackup.engine.checkpoints import (
    CHECKPOINT_SECONDS,
    CheckpointWriter,
    Resume,
    RunCheckpoints,
    load_resume,
)
from cloudbackup.engine.chunking import Cutter
from cloudbackup.engine.errors import (
    BackupStopped,
    FileError,
    os_error,
)
from cloudbackup.engine.index import Index
from cloudbackup.engine.packs import ChunkWriter
from cloudbackup.engine.previous import PreviousCursor, previous_entries, previous_snapshot
from cloudbackup.engine.selection import Selection, SelectionItem
from cloudbackup.engine.snapshot import Entry, SnapshotInfo, encode_frames
from cloudbackup.engine.source_files import SourceFailed
from cloudbackup.engine.source_files import open_regular as _open_regular
from cloudbackup.engine.throttle import Throttle
from cloudbackup.engine.vault import Vault
from cloudbackup.engine.walk import FileTally, count_files, walk_in_folders

Phase = Literal["preparing", "in_progress"]
#: Read size for source files and the unit of progress reports.
BLOCK_SIZE: Final = 1024 * 1024
_MIN_THROTTLED_BLOCK = 4096
#: Chunks below this size are hashed and compressed in batches (one task per batch).
_SMALL_CHUNK: Final = 256 * 1024
_BATCH_BYTES: Final = 2 * 1024 * 1024
_BATCH_ITEMS: Final = 256
#: Least seconds between two rounds of the progress and stop callbacks. Per entry, a caller
#: like the service (a clock read, an event check, look-ups through two layers of methods per
#: call) doubled an unchanged re-run of many small files; every 20 ms keeps counters and stop
#: requests prompt all the same.
REPORT_SECONDS: Final = 0.02


def run_backup(
    vault: Vault,
    inclusions: Iterable[SelectionItem],
    exclusions: Iterable[SelectionItem],
    *,
    on_progress: Callable[[BackupProgress], None],
    should_stop: Callable[[], bool],
    on_phase: Callable[[Phase], None] | None = None,
    max_bps: int = 0,
    workers: int | None = None,
    checkpoint: str | None = None,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
    report_seconds: float = REPORT_SECONDS,
) -> BackupResult:
    """Back up ``inclusions`` minus ``exclusions`` into ``vault`` as a new snapshot.

    ``on_progress`` and ``should_stop`` are called after an entry or a block read (at most
    1 MiB; the scan counts files without an entry each: after a folder, a link, an error or
    ``walk.TALLY_EVERY`` files) once ``report_seconds`` have passed since their last call (0:
    after every one), and at the end of each phase, so the caller must throttle any expensive
    reaction. ``max_bps`` > 0 caps the rate at which source bytes are read, so a run takes
    about ``bytes read / max_bps`` seconds.
    Per-path problems end up in ``errors``; a stop request raises :class:`BackupStopped`; any
    exception leaves no snapshot behind. The snapshot id is allocated just before the snapshot
    is written, so ids follow completion order and failed runs use none. A malformed rule
    raises ``ValueError`` before any work starts.

    ``checkpoint`` names the run for resuming (the service passes the backup id): its stored
    files are checkpointed every ``checkpoint_seconds`` and when it ends without a snapshot, and
    a later call with the same key (or another key and the same inclusions) reuses them. The
    counters of a resumed run include what earlier attempts of its key stored; a stopped run's
    last report counts exactly what reached the vault and is indexed. None: no checkpoints.
    """
    started = time.monotonic()
    selection = Selection(inclusions, exclusions)
    walked = selection
    if vault.storage.local_root is not None:
        # Backing up the vault into itself would grow it forever when it lies in an inclusion.
        walked = selection.with_excluded_folders(
            {os.path.abspath(vault.root), os.path.realpath(vault.root)}
        )
    run = _Archiver(vault, on_progress, should_stop, max_bps, report_seconds)
    if on_phase is not None:
        on_phase("preparing")
    run.scan(walked)
    if on_phase is not None:
        on_phase("in_progress")
    with vault.lock("backup") as lock:
        # After the lock: packs a prune has planned to delete are invisible from here on.
        view = vault.load_index(exclude=vault.planned_packs())
        previous = previous_snapshot(vault, selection)
        writer = ChunkWriter(vault, view, writer=lock.info.id)
        if checkpoint is not None:
            run.resumable = RunCheckpoints(
                CheckpointWriter(vault, checkpoint, list(selection.inclusions)),
                writer,
                load_resume(vault, checkpoint, selection.inclusions),
                checkpoint_seconds,
            )
        # The file list goes to packs of its own (as restic's trees do): losing a data pack
        # then never loses the names of the files it held.
        tree_writer = ChunkWriter(vault, view, writer=lock.info.id)
        threads = workers or max(2, os.cpu_count() or 2)
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="backup")
        try:
            tree = run.store(
                walked, writer, tree_writer, pool, threads, previous_entries(vault, view, previous)
            )
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            run.save_unfinished()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        writer.flush()
        tree_writer.flush()
        snapshot_id = vault.allocate()
        info = SnapshotInfo(
            snapshot_id=snapshot_id,
            created_ns=time.time_ns(),
            inclusions=list(selection.inclusions),
            exclusions=list(selection.exclusions),
            errors=run.errors,
            tree=tree.chunk_ids,
            entry_count=tree.entries,
            tree_size=tree.size,
            files=run.files_searched,
            file_bytes=run.bytes_stored,
        )
        info_size = vault.write_snapshot(info)
        if run.resumable is not None:
            run.resumable.completed()
    return BackupResult(
        snapshot_id=snapshot_id,
        files_searched=run.files_searched,
        bytes_searched=run.bytes_searched,
        files_backed_up=run.files_backed_up,
        bytes_backed_up=run.bytes_backed_up,
        bytes_in_db=info_size + tree.size,
        errors=run.errors,
        duration_seconds=time.monotonic() - started,
        previous_files=run.previous_files,
        files_changed=run.files_changed,
        files_deleted=max(run.previous_files - run.files_matched, 0),
        new_plain_bytes=writer.added_plain_bytes,
        new_stored_bytes=writer.added_stored_bytes,
    )


_Stored = list[tuple[bytes, bool, int]]  # per chunk: id, newly stored, plaintext length


class _Batch:
    """Chunks sent to the pool as one task; small files travel many to a batch."""

    __slots__ = ("chunks", "counted", "future", "nbytes", "stored")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.nbytes = 0
        self.future: Future[_Stored] | None = None
        # The task's result, set by the task itself: the main thread checks it per file
        # without the future's lock (a failed task leaves it None; its future raises).
        self.stored: _Stored | None = None
        self.counted = False  # its new bytes are in ``bytes_backed_up``


class _Pending:
    """An entry waiting for its chunks (files) or ready as it is (everything else)."""

    __slots__ = ("entry", "failed", "previous", "slots")

    def __init__(self, entry: Entry, slots: list[tuple[_Batch, int]] | None = None) -> None:
        self.entry = entry
        self.slots = slots if slots is not None else []
        self.failed = False
        self.previous: tuple[bytes, ...] | None = None  # a re-read file's chunks last time


class _Tree:
    """The snapshot's entry stream, chunked and stored as it grows."""

    def __init__(self, writer: ChunkWriter, cutter: Cutter) -> None:
        self._writer = writer
        self._cutter = cutter
        self._batch: list[Entry] = []
        self.chunk_ids: list[bytes] = []
        self.entries = 0
        self.size = 0

    def add(self, entry: Entry) -> None:
        self._batch.append(entry)
        self.entries += 1
        if len(self._batch) >= 512:
            self._emit()

    def _emit(self) -> None:
        for frame in encode_frames(self._batch):
            self.size += len(frame)
            self._store(self._cutter.feed(frame))
        self._batch = []

    def _store(self, chunks: list[bytes]) -> None:
        self.chunk_ids.extend(self._writer.store(c)[0] for c in chunks)

    def finish(self) -> _Tree:
        self._emit()
        self._store(self._cutter.finish())
        return self


class _Archiver:
    """One backup pass over the inclusions: counters, errors, callbacks and the read throttle."""

    def __init__(
        self,
        vault: Vault,
        on_progress: Callable[[BackupProgress], None],
        should_stop: Callable[[], bool],
        max_bps: int,
        report_seconds: float = REPORT_SECONDS,
    ) -> None:
        self.vault = vault
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.report_seconds = report_seconds
        self._reported = -report_seconds - 1.0  # the first entry reports at once
        self._behind = False  # something happened since the last report
        self.throttle = Throttle(max_bps)
        # Under a throttle, smaller reads keep progress reports and stop checks frequent.
        self.block_size = (
            BLOCK_SIZE if max_bps <= 0 else min(BLOCK_SIZE, max(_MIN_THROTTLED_BLOCK, max_bps // 4))
        )
        self.scanned_files = 0
        self.scanned_bytes = 0
        self.files_searched = 0
        self.bytes_searched = 0
        self.files_backed_up = 0
        self.bytes_backed_up = 0
        self.bytes_completed = 0
        self.bytes_stored = 0  # bytes of the files in the snapshot
        self.previous_files = self.files_matched = self.files_changed = 0
        self.errors: list[FileError] = []
        self._scan_errors = 0
        self.inflight: deque[_Batch] = deque()  # batches in the pool (empty while scanning)
        self.resumable: RunCheckpoints | None = None

    def save_unfinished(self) -> None:
        """The run ends without a snapshot (the pool is done): checkpoint all it stored and
        report that as its counters. Best effort: the original failure is what matters."""
        if self.resumable is None:
            return
        try:
            for pending in getattr(self, "out", ()):
                # Files whose every chunk was stored before the end count as done, in any order.
                if not pending.failed and all(_stored(b) for b, _ in pending.slots):
                    self._finish(pending)
            self.resumable.save(final=True)
            self.files_backed_up = self.resumable.files_backed_up
            self.bytes_backed_up = self.resumable.bytes_backed_up
            self.on_progress(self._progress())
        except Exception:
            pass

    def _settle(self, batch: _Batch) -> None:
        """Count a stored batch's new bytes once, as soon as they are in the vault: not when
        its file reaches the snapshot's tree, which waits for every earlier file (a file whose
        small last chunk waits in a shared batch would hold the counter still for seconds)."""
        stored = batch.stored
        if stored is None:
            if batch.future is not None and batch.future.done():
                batch.future.result()  # a failed task: its error ends the run
            return
        if batch.counted:
            return
        batch.counted = True
        self.bytes_backed_up += sum(n for _, new, n in stored if new)

    def _progress(self) -> BackupProgress:
        # While storing, the scan's totals stand until the second walk has seen more.
        files = max(self.files_searched, self.scanned_files)
        total = max(self.bytes_searched, self.scanned_bytes)
        return BackupProgress(
            files_searched=files,
            bytes_searched=total,
            files_backed_up=self.files_backed_up,
            bytes_backed_up=self.bytes_backed_up,
            bytes_completed=min(self.bytes_completed, total),
            total_bytes=total,
            errors_count=max(len(self.errors), self._scan_errors),
        )

    def checkpoint(self, *, now: bool = False) -> None:
        """Count, checkpoint, report and check for a stop: on ``now``, or once
        ``report_seconds`` have passed since the last time (the callbacks cost per call)."""
        clock = time.monotonic()
        if not now and clock - self._reported < self.report_seconds:
            self._behind = True
            return
        self._reported = clock
        self._behind = False
        for batch in self.inflight:
            self._settle(batch)
        if self.resumable is not None and self.resumable.due():
            # Small chunks wait in a shared batch; send it, or the files whose tails it holds
            # (and every file after them) wait for it to fill before they can be recorded.
            self._submit_batch()
            self.resumable.save()
        self.on_progress(self._progress())
        if self.should_stop():
            raise BackupStopped("stop requested")

    def scan(self, selection: Selection) -> None:
        """Count what the selection holds, reading no content (and making no entry per file)."""
        tally = FileTally()
        for item in count_files(selection, tally):
            if isinstance(item, FileError):
                self._scan_errors += 1
            self.scanned_files, self.scanned_bytes = tally.files, tally.bytes
            self.checkpoint()
        self.scanned_files, self.scanned_bytes = tally.files, tally.bytes
        # The scan's totals, before storing starts (files since the last item are unreported).
        self.checkpoint(now=True)

    def store(
        self,
        selection: Selection,
        writer: ChunkWriter,
        tree_writer: ChunkWriter,
        pool: ThreadPoolExecutor,
        threads: int,
        previous: Iterator[Entry],
    ) -> _Tree:
        self.writer = writer
        self.pool = pool
        self.cutter = self.vault.new_cutter()
        self.batch = _Batch()
        self.max_inflight = 2 * (threads + 1)
        self.out: deque[_Pending] = deque()
        self.tree = _Tree(tree_writer, self.vault.new_cutter())
        prev = PreviousCursor(previous)
        view = writer.view
        resume = self.resumable.resume if self.resumable is not None else Resume()
        # A resumed attempt's totals start from what its earlier attempts stored.
        self.files_backed_up = self.resumable.files_backed_up if self.resumable else 0
        self.bytes_backed_up = self.resumable.bytes_backed_up if self.resumable else 0
        resumed = resume.files.get if resume.files else None
        find_previous, pending_entries = prev.find, self.out
        for item, folder in walk_in_folders(selection):
            if isinstance(item, FileError):
                self.errors.append(item)
            elif item.kind != "file":
                if pending_entries:
                    pending_entries.append(_Pending(item))
                else:
                    self.tree.add(item)  # nothing before it waits: no need to queue it
            else:
                self.files_searched += 1
                self.bytes_searched += item.size
                old = find_previous(item.path)
                if old is not None and old.kind != "file":
                    old = None
                self.files_matched += old is not None
                # Stored by an unfinished run since the last snapshot, or unchanged since it.
                same = (resumed is not None and _unchanged(item, resumed(item.path), view)) or (
                    _unchanged(item, old, view)
                )
                if same:
                    # Reuse its chunks without reading.
                    reused = msgspec.structs.replace(item, chunks=same.chunks)
                    self.bytes_completed += item.size
                    if pending_entries:  # after the files still waiting for their chunks
                        waiting = _Pending(reused)
                        waiting.previous = None if old is None else old.chunks
                        pending_entries.append(waiting)
                    else:  # what _finish does with it, without a queue round trip
                        self.files_changed += old is not None and old.chunks != same.chunks
                        self.bytes_stored += item.size
                        self.tree.add(reused)
                else:
                    self._read_file(item, folder, None if old is None else old.chunks)
            self._drain(block=False)
            self.checkpoint()
        self._submit_batch()
        self._drain(block=True)
        self.checkpoint(now=True)  # the final counters, once every chunk is stored
        self.previous_files = prev.finish()
        return self.tree.finish()

    # -- reading --------------------------------------------------------------------------------

    def _read_file(self, entry: Entry, folder: int, previous: tuple[bytes, ...] | None) -> None:
        done_before = self.bytes_completed
        slots: list[tuple[_Batch, int]] = []
        pending = _Pending(entry, slots)
        pending.previous = previous
        try:
            fd, st = _open_regular(entry.path, folder)
            try:
                read = self._read(fd, entry, done_before, slots)
            finally:
                os.close(fd)
            # Metadata from the open file, not the scan: it belongs with the bytes read.
            pending.entry = msgspec.structs.replace(
                entry,
                size=read,
                mode=stat.S_IMODE(st.st_mode),
                mtime_ns=st.st_mtime_ns,
                uid=st.st_uid,
                gid=st.st_gid,
                inode=st.st_ino,
            )
        except SourceFailed as failed:
            self.cutter.finish()  # drop the partial stream
            self.errors.append(failed.error)
            pending.failed = True
        self.bytes_completed = done_before + entry.size
        self.out.append(pending)

    def _read(
        self, fd: int, entry: Entry, done_before: int, slots: list[tuple[_Batch, int]]
    ) -> int:
        """Read the open file to its end, cutting it into chunks for the pool; the bytes read.
        Checkpoints after each block but the last (the caller does after each file)."""
        block_size = self.block_size
        # One byte more than the scan saw: a file that has not grown is read by one call, whose
        # short result says it is the end (no empty read to confirm it). Small reads also keep
        # a 1 MiB buffer from being allocated (and shrunk) per small file.
        want = min(block_size, entry.size + 1)
        feed, add = self.cutter.feed, self._add_chunk
        throttled = self.throttle.max_bps > 0
        read = 0
        while True:
            try:
                block = os.read(fd, want)
            except OSError as exc:
                raise SourceFailed(os_error(entry.path, exc)) from exc
            n = len(block)
            # A short read of a regular file is its end.
            last = n < want
            if n:
                read += n
                if throttled:
                    self.throttle.consume(n)
                self.bytes_completed = done_before + min(read, entry.size)
                for chunk in feed(block, last=last):
                    slots.append(add(chunk))
            if last:
                for chunk in self.cutter.finish():
                    slots.append(add(chunk))
                return read
            want = block_size
            self._drain(block=False)
            self.checkpoint()

    # -- the pool ---------------------------------------------------------------------------------

    def _add_chunk(self, chunk: bytes) -> tuple[_Batch, int]:
        if len(chunk) >= _SMALL_CHUNK:
            single = _Batch()
            single.chunks.append(chunk)
            self._submit(single)
            return single, 0
        batch = self.batch
        batch.chunks.append(chunk)
        batch.nbytes += len(chunk)
        if batch.nbytes >= _BATCH_BYTES or len(batch.chunks) >= _BATCH_ITEMS:
            self._submit_batch()
        return batch, len(batch.chunks) - 1

    def _submit_batch(self) -> None:
        if self.batch.chunks:
            self._submit(self.batch)
            self.batch = _Batch()

    def _submit(self, batch: _Batch) -> None:
        # Back-pressure: never more than a few batches in memory at once.
        while len(self.inflight) >= self.max_inflight:
            done = self.inflight.popleft()
            done.future.result()  # type: ignore[union-attr]
            self._settle(done)
            self._drain(block=False)
        store = self.writer.store
        chunks = batch.chunks

        def work() -> _Stored:
            stored = [(*store(c), len(c)) for c in chunks]
            # Only the ids are needed from here on: let the bytes go now, not when the file
            # (possibly many chunks long) is finished.
            chunks.clear()
            batch.stored = stored
            return stored

        batch.future = self.pool.submit(work)
        self.inflight.append(batch)
        while self.inflight and self.inflight[0].stored is not None:
            self._settle(self.inflight.popleft())

    def _drain(self, *, block: bool) -> None:
        """Move finished entries, in walk order, into the tree."""
        out = self.out
        while out:
            head = out[0]
            if not head.failed and head.slots:
                last_batch = head.slots[-1][0]
                if last_batch.future is None:
                    if not block:
                        return
                    self._submit_batch()
                if not block and not all(b.stored is not None for b, _ in head.slots):
                    return
            out.popleft()
            if not head.failed:
                self._finish(head)

    def _finish(self, head: _Pending) -> None:
        """Put a finished entry, its chunk ids filled in, into the tree (and the checkpoint)."""
        entry = head.entry
        stored_new = False
        if head.slots:
            chunks: list[bytes] = []
            for batch, i in head.slots:
                self._settle(batch)
                stored = batch.stored
                if stored is None:  # waited for at the end of the run, or failed: it raises
                    stored = batch.future.result()  # type: ignore[union-attr]
                chunk_id, new, _ = stored[i]
                chunks.append(chunk_id)
                stored_new = stored_new or new
            entry = msgspec.structs.replace(entry, chunks=tuple(chunks))
            if stored_new:
                self.files_backed_up += 1
        if head.previous is not None and entry.chunks != head.previous:
            self.files_changed += 1
        if entry.kind == "file":
            self.bytes_stored += entry.size
        if self.resumable is not None and head.slots:
            # Only files read now: a reused file is in the snapshot or checkpoint it came from.
            self.resumable.finished(entry, stored_new)
        self.tree.add(entry)


def _unchanged(item: Entry, old: Entry | None, view: Index) -> Entry | None:
    """``old`` if it records the file ``item`` as it is now (same size, mtime and inode) with
    every chunk still indexed: its chunks can be reused without reading the file."""
    if (
        old is not None
        and item.inode != 0
        and old.size == item.size
        and old.mtime_ns == item.mtime_ns
        and old.inode == item.inode
        and view.has_all(old.chunks)
    ):
        return old
    return None


def _stored(batch: _Batch) -> bool:
    """Whether ``batch`` was stored whole (not cancelled, not failed)."""
    future = batch.future
    return (
        future is not None
        and future.done()
        and not future.cancelled()
        and future.exception() is None
    )
