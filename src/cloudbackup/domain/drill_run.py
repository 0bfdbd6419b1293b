"""Running one restore drill on a worker: restore every file of the backup's snapshot into a
scratch folder under the data folder, compare each restored file's content with the manifest,
remove the folder (also on a failure or a stop), and record what was proven and how fast.

The comparison reads each restored file back from disk, cuts it with the vault's chunker and
hashes every piece with the vault's chunk-id function: the file passes when the ids are the
manifest's, in order. The restore (``engine.restore_snapshot``) already checks each chunk as
it reads it from the vault; reading the written file back also proves what reached the disk.

The claim, heartbeat, stop check, hand-back and finish are the run protocol every kind shares
(``domain.run_protocol``).
"""

from __future__ import annotations

import logging
import mmap
import os
import shutil
import threading
import time
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
from cloudbackup.engine.chunking import new_chunker
from cloudbackup.engine.errors import path_str
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
    placed it (a file appears under its name only once complete) and compares it with the
    manifest; once the restore has ended, a file still missing is reported."""

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
        try:
            for entry in self.vault.iter_entries(self.snapshot_id):
                if entry.kind != "file":
                    continue
                if self.cancelled.is_set():
                    return
                target = self.prefix + entry.path
                self._wait_for(target)
                problem = _check_file(self.vault, target, entry)
                if problem is not None:
                    self.problems.append(problem)
                self.files += 1
                self.bytes += entry.size
        except Exception as exc:  # handed to the run, which fails with it
            self.failure = exc

    def _wait_for(self, target: bytes) -> None:
        while not os.path.lexists(target):
            if self.restored.is_set() or self.cancelled.is_set():
                return
            self.restored.wait(0.002)


def _in_snapshot(error: FileError, prefix: bytes) -> FileError:
    """The restore's error about a path below the scratch folder, naming the snapshot path."""
    scratch = path_str(prefix)
    path = error.path[len(scratch) :] if error.path.startswith(scratch) else error.path
    return FileError(path or "/", error.type, error.code, error.description, error.details)


def _check_file(vault: Vault, restored: bytes, entry: Entry) -> FileError | None:
    """Why the restored file at ``restored`` is not ``entry``'s content, or None. The file is
    mapped, cut where the backup's chunker cut it and each piece hashed in place (no copies)."""
    path = path_str(entry.path)
    try:
        fd = os.open(restored, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        return FileError(path, FILE_NOT_RESTORED, exc.errno, "not found after the restore")
    try:
        size = os.fstat(fd).st_size
        if size != entry.size:
            ids: tuple[bytes, ...] = ()
        elif size == 0:
            ids = ()
        else:
            with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapped:
                ids = _chunk_ids(vault, memoryview(mapped))
    finally:
        os.close(fd)
    if size != entry.size or ids != entry.chunks:
        return FileError(
            path, CONTENT_MISMATCH, None, "the restored content differs from the manifest"
        )
    return None


def _chunk_ids(vault: Vault, data: memoryview) -> tuple[bytes, ...]:
    """The ids of the chunks the vault's chunker cuts ``data`` into (as ``Cutter`` does for a
    file read whole: up to the minimum size it is one chunk)."""
    chunk_id = vault.sealer.chunk_id
    try:
        cdc = new_chunker(vault.config.chunker, vault.chunker_seed)
        if len(data) <= cdc.min_size:
            return (chunk_id(data),)
        return tuple(chunk_id(data[c.offset : c.offset + c.length]) for c in cdc.cut_buf(data))
    finally:
        data.release()


DRILLS = RunExecutor(DRILL_RUNS, DrillRun, give_up=give_up_after_deaths(FAILED_REASON, "drill"))
execute_drill = DRILLS.execute
claim_drill = DRILLS.claim
