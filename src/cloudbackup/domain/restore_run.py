"""Running one restore on a worker (the worker acts as the destination agent): claim it, let the
engine rebuild the selected part of the snapshot, keep the row true, finish it.

The claim, progress writes, stop check, hand-back and finish are the run protocol every kind
shares (``domain.run_protocol``).

The restore's inclusions and exclusions become the engine's ``select`` predicate
(``engine.restore_selection.RestoreSelection``, shared with the remote agent).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path
from typing import Any

from cloudbackup.domain.restores import (
    RESTORE_DIAGNOSTICS,
    RESTORE_ERROR_REASON,
    RESTORE_RUNS,
)
from cloudbackup.domain.roots import HostRoots, RootsPolicy, TargetGuard
from cloudbackup.domain.run_executor import RunExecutor, file_error_columns, give_up_after_deaths
from cloudbackup.domain.run_protocol import (
    Outcome,
    OwnedRun,
    RunClaim,
)
from cloudbackup.domain.run_states import RestoreState
from cloudbackup.domain.vaults import open_service_vault
from cloudbackup.engine import (
    FILE_UNWRITABLE,
    Entry,
    FileError,
    RestoreProgress,
    RestoreResult,
    Vault,
    restore_snapshot,
)
from cloudbackup.engine.restore_selection import RestoreSelection
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import BackupRepository
from cloudbackup.store.tables import Agent, Restore, RestoreError

log = logging.getLogger("cloudbackup.run")

S = RestoreState
PROGRESS_EVENT_SECONDS = 5.0
FAILED_REASON = "restore_failed"
NOT_IN_BACKUP = "file_or_folder_missing"


# -- the run ----------------------------------------------------------------------------------

RestoreClaim = RunClaim[Restore, RestoreError, RestoreState]


class RestoreRun(OwnedRun[Restore, RestoreError, RestoreState]):
    """A claimed restore: the engine rebuilds the selection, at most ``restore_max_bps``."""

    failed_reason = FAILED_REASON
    progress: RestoreProgress | None

    def __init__(self, db: Database, settings: Settings, claim: RestoreClaim) -> None:
        super().__init__(db, settings, claim)
        self._started = time.monotonic()
        # What earlier attempts reported: a re-driven attempt finds their files again (kept,
        # not rewritten) within moments, and its readings meanwhile must not go back.
        run = claim.run
        self._earlier = (
            (run.files_restored or 0, run.bytes_restored or 0) if claim.resumed else (0, 0)
        )

    @property
    def restore(self) -> Restore:
        return self.claim.run

    def work(self) -> Outcome:
        selection = RestoreSelection(self.restore.inclusions or [], self.restore.exclusions or [])
        self.enter(S.PREPARING)
        if not self._backup_restorable():
            return self.finish(
                S.FAILED,
                {
                    "errors_reason": FAILED_REASON,
                    "errors_diagnostics": (
                        f"Backup {self.restore.backup_id} is no longer restorable "
                        "(a cleanup expired it)."
                    ),
                },
            )
        vault = open_service_vault(self.db, self.settings, self.restore.vault_id)
        roots = self._roots()
        refusal = self._refused_destination(vault, roots)
        if refusal is not None:
            values = {"errors_reason": FAILED_REASON, "errors_diagnostics": refusal}
            return self.finish(S.FAILED, values)
        self.enter(S.IN_PROGRESS)
        self._started = time.monotonic()
        destination = self.restore.destination_path
        guard = TargetGuard(roots)
        base = b"" if destination is None else os.fsencode(destination.rstrip("/"))

        def select(entry: Entry) -> bool:
            if not (selection.everything or selection.selects(entry.path)):
                return False
            return guard.allows(os.fsdecode(base + entry.path))

        result = restore_snapshot(
            vault,
            self.restore.snapshot_id,
            None if destination is None else Path(destination),
            overwrite=self.restore.overwrite_files,
            # A run taken over finds what its earlier owner wrote: not a conflict, not
            # written again; the run's id names its temp files across attempts.
            resume=self.claim.resumed,
            run_key=self.restore.id,
            on_progress=self.on_progress,
            should_stop=self.should_stop,
            select=select,
        )
        return self._complete(result, selection.unmatched(), guard.refused)

    def _roots(self) -> HostRoots:
        """The destination agent's roots as they are now (the operator may have narrowed them
        since the restore was accepted)."""
        with self.db.transaction() as session:
            agent = session.get(Agent, self.restore.destination_agent_id)
        policy = RootsPolicy.from_settings(self.settings)
        return policy.for_agent(agent.allowed_roots if agent is not None else [])

    def _refused_destination(self, vault: Vault, roots: HostRoots) -> str | None:
        """Why nothing may be written, if the destination (or, restoring to the original
        locations, a folder the snapshot holds) lies outside the roots or reaches the service's
        own files, as the filesystem really is."""
        destination = self.restore.destination_path
        targets = (
            [("destination_path", destination)]
            if destination is not None
            else [
                ("Original location", item.path)
                for item in vault.read_info(self.restore.snapshot_id).inclusions
            ]
        )
        for label, target in targets:
            refusal = roots.refusal(label, target)
            if refusal is not None:
                return f"Nothing restored: {refusal}"
        return None

    def _backup_restorable(self) -> bool:
        with self.db.transaction() as session:
            backup = BackupRepository(session).get(self.restore.backup_id)
        return backup is not None and backup.restorable and backup.snapshot_id is not None

    # -- engine callbacks ---------------------------------------------------------------------
    def on_progress(self, progress: RestoreProgress) -> None:
        self.report(progress)
        # The limit is on writes: files found already restored are not written.
        self._throttle(progress.bytes_completed - progress.bytes_in_place)

    def _throttle(self, done: int) -> None:
        """Hold the write rate at ``restore_max_bps``, still flushing and noticing stops."""
        limit = self.settings.restore_max_bps
        if limit <= 0:
            return
        while not self._stop_seen:
            ahead = done / limit - (time.monotonic() - self._started)
            if ahead <= 0:
                return
            time.sleep(min(ahead, 0.1))
            if time.monotonic() - self._last_flush >= self.settings.progress_interval:
                self.flush()

    # -- writes -------------------------------------------------------------------------------
    def counter_values(self) -> dict[str, Any]:
        p = self.progress
        if p is None:
            return {}
        files, size = self._earlier
        return {
            "files_restored": max(p.files_restored, files),
            "bytes_restored": max(p.bytes_restored, size),
        }

    def _complete(
        self, result: RestoreResult, unmatched: list[str], refused: dict[str, str]
    ) -> Outcome:
        problems: list[FileError] = [
            FileError(
                path=path, type=NOT_IN_BACKUP, description="The backup holds nothing at this path."
            )
            for path in unmatched
        ]
        problems += [
            FileError(path=path, type=FILE_UNWRITABLE, code=errno.EACCES, description=why)
            for path, why in refused.items()
        ]
        problems += result.errors
        errors = [
            RestoreError(restore_id=self.restore.id, **file_error_columns(index, error))
            for index, error in enumerate(problems)
        ]
        values = {"files_restored": result.files_restored, "bytes_restored": result.bytes_restored}
        return self.complete(values, errors, RESTORE_ERROR_REASON, RESTORE_DIAGNOSTICS)


RESTORES = RunExecutor(
    RESTORE_RUNS, RestoreRun, give_up=give_up_after_deaths(FAILED_REASON, "restore")
)
execute_restore = RESTORES.execute
claim_restore = RESTORES.claim
