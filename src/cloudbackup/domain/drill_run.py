"""Running one restore drill on a worker: restore every file of the backup's snapshot into a
scratch folder under the data folder, compare each restored file's content with the manifest,
remove the folder (also on a failure or a stop), and record what was proven and how fast.

The comparison reads each restored file back from disk, cuts it where the manifest's chunks
end (each chunk's plaintext length is in the vault's index: the chunker is not run again) and
hashes every piece with the vault's chunk-id function: the file passes when its size is the
manifest's and every piece's id is the manifest's, in order. The restore
(``engine.restore_snapshot``) already checks each chunk as it reads it from the vault; reading
the written file back also proves what reached the disk. A file is removed as soon as it is
checked, so the scratch folder empties as the drill goes and removing it at the end is quick.

The claim, heartbeat, stop check, hand-back and finish are the run protocol every kind shares
(``domain.run_protocol``).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloudbackup.domain.drills import DRILL_RUNS
from cloudbackup.domain.run_executor import RunExecutor, file_error_columns, give_up_after_deaths
from cloudbackup.domain.run_protocol import Outcome, OwnedRun, RunClaim, RunStopRequested
from cloudbackup.domain.run_states import DrillState
from cloudbackup.domain.vaults import open_service_vault
from cloudbackup.engine import (
    Entry,
    FileError,
    Vault,
    restore_snapshot,
)
from cloudbackup.engine.dirfd import FolderCache
from cloudbackup.engine.errors import path_str
from cloudbackup.engine.selection import normalize
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import BackupRepository
from cloudbackup.store.tables import Drill, DrillError

log = logging.getLogger("cloudbackup.run")

S = DrillState
FAILED_REASON = "drill_failed"
DAMAGE_REASON = "files_not_restorable"
CONTENT_MISMATCH = "content_mismatch"  # restored, but not the content the manifest records
FILE_NOT_RESTORED = "file_not_restored"  # the restore reported nothing, yet no file is there
SCRATCH_FOLDER = "drills"  # under the data folder: <data_dir>/drills/<drill id>
READ_WHOLE = 256 * 1024  # files up to this size are read, larger ones mapped
# How often the comparison looks for the next file while the restore is behind: each look takes
# the GIL from the restore's writer threads, so not too often (the end of the restore wakes it).
WAIT_SECONDS = 0.02

DrillClaim = RunClaim[Drill, DrillError, DrillState]


def scratch_folder(settings: Settings, drill_id: str) -> Path:
    """Where drill ``drill_id`` restores to (removed when it ends)."""
    return Path(settings.data_dir) / SCRATCH_FOLDER / drill_id


def remove_scratch(folder: Path) -> None:
    """Remove a scratch folder, also below the read-only folders a snapshot may hold."""

    def writable_then_retry(function: Any, path: str, _: Any) -> None:
        os.chmod(os.path.dirname(path), 0o700)
        function(path)

    if folder.exists():
        shutil.rmtree(folder, onerror=writable_then_retry)


class DrillRun(OwnedRun[Drill, DrillError, DrillState]):
    """A claimed drill: restore into scratch, compare with the manifest, clean up."""

    failed_reason = FAILED_REASON

    def __init__(self, db: Database, settings: Settings, claim: DrillClaim) -> None:
        super().__init__(db, settings, claim)
        self._started = time.monotonic()
        self._comparator: _Comparator | None = None

    @property
    def drill(self) -> Drill:
        return self.claim.run

    def work(self) -> Outcome:
        self.enter(S.IN_PROGRESS)
        self._started = time.monotonic()
        if not self._backup_restorable():
            diagnostics = f"Backup {self.drill.backup_id} is no longer restorable."
            return self.finish(
                S.FAILED, {"errors_reason": FAILED_REASON, "errors_diagnostics": diagnostics}
            )
        vault = open_service_vault(self.db, self.settings, self.drill.vault_id)
        scratch = scratch_folder(self.settings, self.drill.id)
        remove_scratch(scratch)  # what an earlier attempt left behind
        scratch.mkdir(parents=True)
        prefix = os.fsencode(scratch)
        # The comparison follows the restore file by file in a thread of its own: a drill
        # then takes little longer than the restore alone.
        self._comparator = comparator = _Comparator(vault, self.drill.snapshot_id, prefix)
        comparator.start()
        try:
            result = restore_snapshot(
                vault,
                self.drill.snapshot_id,
                scratch,
                overwrite=True,
                on_progress=self.report,
                should_stop=self.should_stop,
            )
            comparator.restored.set()
            while comparator.is_alive():
                comparator.join(timeout=0.2)
                if self.should_stop():
                    raise RunStopRequested(self.run_id)
            if comparator.failure is not None:
                raise comparator.failure
            problems = [_in_snapshot(error, prefix) for error in result.errors]
            reported = {problem.path for problem in problems}
            problems += [p for p in comparator.problems if p.path not in reported]
        finally:
            comparator.cancelled.set()
            comparator.join()
            remove_scratch(scratch)
        return self._complete(problems)

    def _backup_restorable(self) -> bool:
        with self.db.read() as session:
            backup = BackupRepository(session).get(self.drill.backup_id)
        return backup is not None and backup.restorable and backup.snapshot_id is not None

    # -- writes -------------------------------------------------------------------------------
    def counter_values(self) -> dict[str, Any]:
        checked = self._comparator
        if checked is None:
            return {}
        return {"files_checked": checked.files, "bytes_checked": checked.bytes}

    def _complete(self, problems: list[FileError]) -> Outcome:
        duration = max(time.monotonic() - self._started, 1e-6)
        values: dict[str, Any] = {
            **self.counter_values(),
            "mismatches": len(problems),
            "duration_seconds": round(duration, 3),
            "bytes_per_second": int(self.counter_values().get("bytes_checked", 0) / duration),
        }
        if not problems:
            return self.finish(S.PASSED, values)
        errors = [
            DrillError(drill_id=self.drill.id, **file_error_columns(index, problem))
            for index, problem in enumerate(problems)
        ]
        values |= {
            "errors_count": len(errors),
            "errors_reason": DAMAGE_REASON,
            "errors_diagnostics": (
                f"{len(errors)} files of the backup could not be restored as it recorded them."
            ),
        }
        return self.finish(S.FAILED, values, errors)


class _Comparator(threading.Thread):
    """Reads each file of the snapshot back from the scratch folder as soon as the restore has
    placed it (a file appears under its name only once complete), compares it with the
    manifest and removes it; once the restore has ended, a file still missing is reported."""

    def __init__(self, vault: Vault, snapshot_id: int, prefix: bytes) -> None:
        super().__init__(name="drill-compare", daemon=True)
        self.vault, self.snapshot_id, self.prefix = vault, snapshot_id, prefix
        self.restored = threading.Event()  # the restore has ended
        self.cancelled = threading.Event()
        self.problems: list[FileError] = []
        self.files = 0
        self.bytes = 0
        self.failure: Exception | None = None

    def run(self) -> None:
        folders = FolderCache()  # this thread's: descriptors are never shared
        try:
            for entry in self.vault.iter_entries(self.snapshot_id):
                if entry.kind != "file":
                    continue
                if self.cancelled.is_set():
                    return
                self._wait_for(self.prefix + entry.path)
                problem = _check_file(self.vault, folders, self.prefix, entry)
                if problem is not None:
                    self.problems.append(problem)
                self.files += 1
                self.bytes += entry.size
        except Exception as exc:  # handed to the run, which fails with it
            self.failure = exc
        finally:
            folders.close()

    def _wait_for(self, target: bytes) -> None:
        while not os.path.lexists(target):
            if self.restored.is_set() or self.cancelled.is_set():
                return
            self.restored.wait(WAIT_SECONDS)


def _in_snapshot(error: FileError, prefix: bytes) -> FileError:
    """The restore's error about a path below the scratch folder, naming the snapshot path."""
    scratch = path_str(prefix)
    path = error.path[len(scratch) :] if error.path.startswith(scratch) else error.path
    return FileError(path or "/", error.type, error.code, error.description, error.details)


def _check_file(
    vault: Vault, folders: FolderCache, scratch: bytes, entry: Entry
) -> FileError | None:
    """Why the file restored for ``entry`` below ``scratch`` is not ``entry``'s content, or
    None; the file is removed once read (the scratch folder empties as the drill goes, so
    removing it at the end is quick). Reached one folder at a time without following links,
    as the restore wrote it."""
    path = path_str(entry.path)
    if not _normalized(entry.path):
        # Never written (the restore reports it), and never a way out of the scratch folder.
        return FileError(path, FILE_NOT_RESTORED, None, "not a normalized absolute path")
    folder, _, name = entry.path.lstrip(b"/").rpartition(b"/")
    try:
        parent = folders.folder(scratch, folder, create=False)
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    except OSError as exc:
        return FileError(path, FILE_NOT_RESTORED, exc.errno, "not found after the restore")
    try:
        matches = _holds_content(vault, fd, entry)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):  # what stays is removed with the folder
            os.unlink(name, dir_fd=parent)
    if not matches:
        return FileError(
            path, CONTENT_MISMATCH, None, "the restored content differs from the manifest"
        )
    return None


def _normalized(path: bytes) -> bool:
    try:
        return b"\0" not in path and normalize(path) == path
    except ValueError:  # not absolute
        return False


def _holds_content(vault: Vault, fd: int, entry: Entry) -> bool:
    """Whether the open file ``fd`` is ``entry``'s content: cut where the manifest's chunks
    end (their plaintext lengths from the vault's index, no chunker run again), every piece's
    id is the manifest's. Small files are read, larger ones mapped and hashed in place."""
    size = os.fstat(fd).st_size
    if size != entry.size:
        return False
    if size == 0:
        return not entry.chunks
    lengths = _chunk_lengths(vault, entry)
    if lengths is None:
        return False
    chunk_id = vault.sealer.chunk_id
    if size <= READ_WHOLE:
        data = os.read(fd, size)
        return len(data) == size and _ids_match(chunk_id, memoryview(data), entry, lengths)
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapped, memoryview(mapped) as view:
        return _ids_match(chunk_id, view, entry, lengths)


def _chunk_lengths(vault: Vault, entry: Entry) -> tuple[int, ...] | None:
    """Where each of ``entry``'s chunks ends in the file, as lengths; None if they cannot
    add up to its size (a chunk the index does not know)."""
    if len(entry.chunks) == 1:
        return (entry.size,)
    index = vault.index()
    lengths = tuple(index.plain_length(c) or 0 for c in entry.chunks)
    return lengths if 0 not in lengths and sum(lengths) == entry.size else None


def _ids_match(
    chunk_id: Callable[[memoryview], bytes],
    data: memoryview,
    entry: Entry,
    lengths: tuple[int, ...],
) -> bool:
    offset = 0
    for expected, length in zip(entry.chunks, lengths, strict=True):
        with data[offset : offset + length] as piece:
            if chunk_id(piece) != expected:
                return False
        offset += length
    return True


DRILLS = RunExecutor(DRILL_RUNS, DrillRun, give_up=give_up_after_deaths(FAILED_REASON, "drill"))
execute_drill = DRILLS.execute
claim_drill = DRILLS.claim
