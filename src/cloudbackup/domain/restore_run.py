"""Running one restore on a worker (the worker acts as the destination agent): claim it, let the
engine rebuild the selected part of the snapshot, keep the row true, finish it.

Modelled on ``backup_run``, with what it shares with cleanups in ``run_worker``: the claim is a
compare-and-set on the state (a second delivery does nothing); counters and the heartbeat are
written at least every ``progress_interval`` seconds and the same write reads the state back,
which is how a stop request reaches the running engine; a run whose worker died is taken over a
bounded number of times, then failed.

The restore's inclusions and exclusions become the engine's ``select`` predicate
(:class:`RestoreSelection`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from cloudbackup.domain.backup_run import LostOwnership, RunIsAlive
from cloudbackup.domain.configurations import leads_outside_roots
from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.domain.events import record_restore_event
from cloudbackup.domain.restores import (
    RESTORE_DIAGNOSTICS,
    RESTORE_ERROR_REASON,
    RESTORE_RUNS,
    open_backup_vault,
    transition,
)
from cloudbackup.domain.run_worker import OwnedRun, RunClaim, SweepReport, claim_run, sweep_runs
from cloudbackup.domain.states import RestoreState
from cloudbackup.engine import (
    FileError,
    RestoreProgress,
    RestoreResult,
    RestoreStopped,
    Vault,
    restore_snapshot,
)
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import BackupRepository
from cloudbackup.store.run_repositories import RestoreRepository
from cloudbackup.store.tables import Restore, RestoreError, utcnow

log = logging.getLogger("cloudbackup.run")

S = RestoreState
PROGRESS_EVENT_SECONDS = 5.0
FAILED_REASON = "restore_failed"
NOT_IN_BACKUP = "file_or_folder_missing"


# -- what to restore --------------------------------------------------------------------------


def _norm(path: str) -> bytes:
    """A validated absolute path (no empty, '.' or '..' parts) as the bytes manifests hold."""
    raw = os.fsencode(path).rstrip(b"/")
    return raw or b"/"


def _within(path: bytes, folder: bytes) -> bool:
    return folder == b"/" or path == folder or path.startswith(folder + b"/")


class RestoreSelection:
    """A restore's inclusions minus its exclusions, over snapshot paths (component-wise, so
    ``/web`` does not select ``/website``). No inclusions select the whole snapshot."""

    def __init__(self, inclusions: Sequence[dict[str, Any]], exclusions: Sequence[dict[str, Any]]):
        self.inclusions = [(item["type"], item["path"], _norm(item["path"])) for item in inclusions]
        self._excluded_files = {_norm(e["path"]) for e in exclusions if e["type"] == "file"}
        self._excluded_folders = {_norm(e["path"]) for e in exclusions if e["type"] == "folder"}
        self.matched: set[int] = set()
        self.everything = not inclusions and not exclusions

    def is_excluded(self, path: bytes) -> bool:
        if path in self._excluded_files:
            return True
        current = path
        while True:
            if current in self._excluded_folders:
                return True
            if current == b"/" or not current:
                return False
            current = current.rsplit(b"/", 1)[0] or b"/"

    def selects(self, path: bytes) -> bool:
        """Whether the snapshot entry at ``path`` is restored; remembers which inclusion it met."""
        if not self.inclusions:
            return not self.is_excluded(path)
        hit = False
        for index, (kind, _, norm) in enumerate(self.inclusions):
            if path == norm or (kind == "folder" and _within(path, norm)):
                self.matched.add(index)
                hit = True
        return hit and not self.is_excluded(path)

    def unmatched(self) -> list[str]:
        """Inclusions the snapshot holds nothing for (reported as per-file errors)."""
        return [path for i, (_, path, _) in enumerate(self.inclusions) if i not in self.matched]


# -- claiming ---------------------------------------------------------------------------------

Claim = RunClaim[Restore, RestoreError, RestoreState]


def execute_restore(db: Database, settings: Settings, restore_id: str) -> str:
    """Run the restore if this delivery may; return a final state, `noop` or `busy` (another
    worker's run looks alive; the caller retries once its heartbeat could have gone stale)."""
    try:
        claim = claim_restore(db, settings, restore_id)
    except RunIsAlive:
        return "busy"
    if claim is None:
        return "noop"
    return _Run(db, settings, claim).run()


def claim_restore(db: Database, settings: Settings, restore_id: str) -> Claim | None:
    return claim_run(RESTORE_RUNS, db, settings, restore_id, give_up=_give_up)


def _give_up(restore: Restore) -> dict[str, Any]:
    return {
        "errors_reason": FAILED_REASON,
        "errors_diagnostics": (
            f"The worker running this restore stopped responding {restore.attempts} "
            "times; giving up. Check the worker logs, then start the restore again."
        ),
    }


# -- running ----------------------------------------------------------------------------------


class _Stop(Exception):
    """A stop request arrived before the engine started."""


@dataclass
class _Run(OwnedRun[Restore, RestoreError, RestoreState]):
    _last_event: float = 0.0
    _started: float = field(default_factory=time.monotonic)
    _progress: RestoreProgress | None = None

    @property
    def restore(self) -> Restore:
        return self.claim.run

    def run(self) -> str:
        selection = RestoreSelection(self.restore.inclusions or [], self.restore.exclusions or [])
        try:
            self._enter(S.PREPARING)
            if not self._backup_restorable():
                return self._finish(
                    S.FAILED,
                    {
                        "errors_reason": FAILED_REASON,
                        "errors_diagnostics": (
                            f"Backup {self.restore.backup_id} is no longer restorable "
                            "(a cleanup expired it)."
                        ),
                    },
                )
            vault = open_backup_vault(self.settings, self.restore.vault_id)
            refusal = self._leaves_allowed_roots(vault)
            if refusal is not None:
                values = {"errors_reason": FAILED_REASON, "errors_diagnostics": refusal}
                return self._finish(S.FAILED, values)
            self._enter(S.IN_PROGRESS)
            self._started = time.monotonic()
            destination = self.restore.destination_path
            result = restore_snapshot(
                vault,
                self.restore.snapshot_id,
                None if destination is None else Path(destination),
                overwrite=self.restore.overwrite_files,
                # A re-driven run finds what its earlier attempt wrote: not a conflict.
                resume=self.claim.attempt > 1,
                on_progress=self.on_progress,
                should_stop=self.should_stop,
                # Everything selected: no predicate, so the engine reads the entry list once.
                select=None if selection.everything else lambda e: selection.selects(e.path),
            )
        except (_Stop, RestoreStopped):
            return self._finish(S.STOPPED, self._counter_values())
        except LostOwnership:
            log.warning("restore %s was taken over by another worker", self.restore.id)
            return "lost"
        except Exception as exc:  # the run failed: record why, so it is never left running
            log.exception("restore %s failed", self.restore.id)
            values = self._counter_values()
            values.update(
                errors_reason=FAILED_REASON, errors_diagnostics=f"{type(exc).__name__}: {exc}"
            )
            return self._finish(S.FAILED, values)
        return self._complete(result, selection.unmatched())

    def _leaves_allowed_roots(self, vault: Vault) -> str | None:
        """Why nothing may be written, if the destination (or, restoring to the original
        locations, a folder the snapshot holds) really lies outside the allowed roots."""
        roots = self.settings.allowed_root_list
        if not roots:
            return None
        destination = self.restore.destination_path
        targets = (
            [destination]
            if destination is not None
            else [item.path for item in vault.read_info(self.restore.snapshot_id).inclusions]
        )
        for target in targets:
            real = leads_outside_roots(target, roots)
            if real is not None:
                return f"Nothing restored: {target} leads to {real}, outside the allowed roots."
        return None

    def _enter(self, target: RestoreState) -> None:
        """Move to a progress state; a pending stop request ends the run instead."""
        with self.db.transaction() as session:
            self.claim.check_owner(session)
            values: dict[str, Any] = {"heartbeat_at": utcnow()}
            if target is S.PREPARING and self.restore.started_time is None:
                values["started_time"] = utcnow()
            if self.restore.state == target:
                return  # a re-driven run is already past this phase
            if not transition(session, self.restore, target, values):
                state = RestoreRepository(session).state_of(self.restore.id)
                if state == S.STOP_REQUESTED:
                    raise _Stop(self.restore.id)
                if state is not None and S(state) in (S.PREPARING, S.IN_PROGRESS):
                    return  # re-driven: the previous owner already entered it
                raise RuntimeError(f"restore {self.restore.id} is {state}, cannot run")
        self._last_flush = time.monotonic()

    def _backup_restorable(self) -> bool:
        with self.db.transaction() as session:
            backup = BackupRepository(session).get(self.restore.backup_id)
        return backup is not None and backup.restorable and backup.snapshot_id is not None

    # -- engine callbacks ---------------------------------------------------------------------
    def on_progress(self, progress: RestoreProgress) -> None:
        self._progress = progress
        if time.monotonic() - self._last_flush >= self.settings.progress_interval:
            self._flush()
        self._throttle(progress.bytes_completed)

    def should_stop(self) -> bool:
        if time.monotonic() - self._last_flush >= self.settings.progress_interval:
            self._flush()
        return self._stop_seen

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
                self._flush()

    # -- writes -------------------------------------------------------------------------------
    def _counter_values(self) -> dict[str, Any]:
        p = self._progress
        if p is None:
            return {}
        return {"files_restored": p.files_restored, "bytes_restored": p.bytes_restored}

    def _flush(self) -> None:
        self._write_progress(self._counter_values(), also=self._progress_event)

    def _progress_event(self, session: Session) -> None:
        p = self._progress
        if p is not None and time.monotonic() - self._last_event >= PROGRESS_EVENT_SECONDS:
            self._last_event = time.monotonic()
            record_restore_event(
                session,
                self.restore,
                "restore_progress",
                extra={
                    "bytes_completed": p.bytes_completed,
                    "bytes_remaining": max(p.total_bytes - p.bytes_completed, 0),
                    "total_bytes": p.total_bytes,
                },
            )

    def _complete(self, result: RestoreResult, unmatched: list[str]) -> str:
        problems: list[FileError] = [
            FileError(
                path=path, type=NOT_IN_BACKUP, description="The backup holds nothing at this path."
            )
            for path in unmatched
        ]
        problems += result.errors
        errors = [
            RestoreError(
                restore_id=self.restore.id,
                index=index,
                path=error.path,
                type=error.type,
                exception_code=error.code,
                exception_description=error.description,
                exception_details=error.details,
            )
            for index, error in enumerate(problems)
        ]
        values: dict[str, Any] = {
            "files_restored": result.files_restored,
            "bytes_restored": result.bytes_restored,
        }
        if errors:
            values.update(
                errors_count=len(errors),
                errors_reason=RESTORE_ERROR_REASON,
                errors_diagnostics=RESTORE_DIAGNOSTICS,
            )
        target = S.COMPLETED_WITH_ERRORS if errors else S.COMPLETED
        return self._finish(target, values, errors)


# -- the sweeper's part -----------------------------------------------------------------------


def sweep_restores(
    db: Database, dispatcher: Dispatcher, settings: Settings, now: datetime | None = None
) -> SweepReport:
    """Re-publish restores no worker has claimed and those whose worker died."""
    return sweep_runs(RESTORE_RUNS, db, dispatcher, settings, now)
