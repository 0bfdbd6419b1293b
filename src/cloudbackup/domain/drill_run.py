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
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cloudbackup.domain.drills import DRILL_RUNS
from cloudbackup.domain.run_executor import RunExecutor, file_error_columns, give_up_after_deaths
from cloudbackup.domain.run_protocol import Outcome, OwnedRun, RunClaim, RunStopRequested
from cloudbackup.domain.run_states import DrillState
from cloudbackup.domain.vaults import open_service_vault
from cloudbackup.engine import (
    BLOCK_SIZE,
    Entry,
    FileError,
    Vault,
    restore_snapshot,
)
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
        self._files_checked = 0
        self._bytes_checked = 0

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
        try:
            result = restore_snapshot(
                vault,
                self.drill.snapshot_id,
                scratch,
                overwrite=True,
                on_progress=self.report,
                should_stop=self.should_stop,
            )
            prefix = os.fsencode(scratch)
            problems = [_in_snapshot(error, prefix) for error in result.errors]
            problems += self._compare(vault, prefix, {p.path for p in problems})
        finally:
            remove_scratch(scratch)
        return self._complete(problems)

    def _backup_restorable(self) -> bool:
        with self.db.read() as session:
            backup = BackupRepository(session).get(self.drill.backup_id)
        return backup is not None and backup.restorable and backup.snapshot_id is not None

    # -- the comparison -----------------------------------------------------------------------
    def _compare(self, vault: Vault, prefix: bytes, reported: set[str]) -> list[FileError]:
        """Every restored file read back and its chunk ids compared with the manifest's; the
        files the restore already reported are counted as checked and not read again."""
        problems: list[FileError] = []
        for entry in vault.iter_entries(self.drill.snapshot_id):
            if entry.kind != "file":
                continue
            self._files_checked += 1
            self._bytes_checked += entry.size
            if path_str(entry.path) in reported:
                continue
            problem = _check_file(vault, prefix + entry.path, entry)
            if problem is not None:
                problems.append(problem)
            if self.should_stop():
                raise RunStopRequested(self.run_id)
        return problems

    # -- writes -------------------------------------------------------------------------------
    def counter_values(self) -> dict[str, Any]:
        return {"files_checked": self._files_checked, "bytes_checked": self._bytes_checked}

    def _complete(self, problems: list[FileError]) -> Outcome:
        duration = max(time.monotonic() - self._started, 1e-6)
        values: dict[str, Any] = {
            **self.counter_values(),
            "mismatches": len(problems),
            "duration_seconds": round(duration, 3),
            "bytes_per_second": int(self._bytes_checked / duration),
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


def _in_snapshot(error: FileError, prefix: bytes) -> FileError:
    """The restore's error about a path below the scratch folder, naming the snapshot path."""
    scratch = path_str(prefix)
    path = error.path[len(scratch) :] if error.path.startswith(scratch) else error.path
    return FileError(path or "/", error.type, error.code, error.description, error.details)


def _pieces(fd: int, size: int) -> Iterator[tuple[bytes, bool]]:
    """A file's bytes in blocks, the last one flagged (one read for a small file)."""
    if size <= BLOCK_SIZE:
        data = os.read(fd, size + 1)
        yield data, True
        return
    while True:
        block = os.read(fd, BLOCK_SIZE)
        yield block, not block


def _check_file(vault: Vault, restored: bytes, entry: Entry) -> FileError | None:
    """Why the restored file at ``restored`` is not ``entry``'s content, or None."""
    path = path_str(entry.path)
    try:
        fd = os.open(restored, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        return FileError(path, FILE_NOT_RESTORED, exc.errno, "not found after the restore")
    cutter, chunk_id = vault.new_cutter(), vault.sealer.chunk_id
    ids: list[bytes] = []
    total = 0
    try:
        for block, last in _pieces(fd, entry.size):
            total += len(block)
            ids += [chunk_id(chunk) for chunk in cutter.feed(block, last=last)]
            if last:
                break
    finally:
        os.close(fd)
    if total != entry.size or tuple(ids) != entry.chunks:
        return FileError(
            path, CONTENT_MISMATCH, None, "the restored content differs from the manifest"
        )
    return None


DRILLS = RunExecutor(DRILL_RUNS, DrillRun, give_up=give_up_after_deaths(FAILED_REASON, "drill"))
execute_drill = DRILLS.execute
claim_drill = DRILLS.claim
