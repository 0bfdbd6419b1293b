"""Running one restore on a worker (the worker acts as the destination agent): claim it, let the
engine rebuild the selected part of the snapshot, keep the row true, finish it.

Modelled on ``backup_run``: the claim is a compare-and-set on the state (a second delivery does
nothing); counters and the heartbeat are written at least every ``progress_interval`` seconds and
the same write reads the state back, which is how a stop request reaches the running engine; a
run whose worker died is taken over a bounded number of times, then failed.

The restore's inclusions and exclusions become the engine's ``select`` predicate
(:class:`RestoreSelection`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cloudbackup.domain.backup_run import LostOwnership, RunIsAlive
from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.domain.errors import Unavailable
from cloudbackup.domain.events import record_restore_event
from cloudbackup.domain.restores import (
    RESTORE_DIAGNOSTICS,
    RESTORE_ERROR_REASON,
    open_backup_vault,
    transition,
)
from cloudbackup.domain.states import (
    RESTORE_FINAL_STATES,
    RESTORE_RUNNING_STATES,
    RestoreState,
)
from cloudbackup.engine import (
    FileError,
    RestoreProgress,
    RestoreResult,
    RestoreStopped,
    restore_snapshot,
)
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import BackupRepository
from cloudbackup.store.run_repositories import RestoreRepository
from cloudbackup.store.tables import RESTORES, Restore, RestoreError, as_utc, utcnow

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


@dataclass(slots=True)
class Claim:
    """A restore this worker now owns: ``attempt`` identifies it in every later write."""

    restore: Restore
    attempt: int


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
    with db.transaction() as session:
        repo = RestoreRepository(session)
        restore = repo.get(restore_id)
        if restore is None:
            log.warning("restore %s does not exist; nothing to run", restore_id)
            return None
        state = S(restore.state)
        if state in RESTORE_FINAL_STATES:
            return None
        if state is S.STOP_REQUESTED and restore.heartbeat_at is None:
            transition(session, restore, S.STOPPED)  # stopped before any worker picked it up
            return None
        now = utcnow()
        if state is S.START_REQUESTED:
            attempt = restore.attempts + 1
            if not transition(
                session, restore, S.QUEUED, {"heartbeat_at": now, "attempts": attempt}
            ):
                return None
            return Claim(restore, attempt)
        # Claimed before: a duplicate delivery, or a re-drive of a run whose worker died.
        stale_before = now - timedelta(seconds=settings.heartbeat_timeout_seconds)
        if restore.heartbeat_at is not None and as_utc(restore.heartbeat_at) > stale_before:
            raise RunIsAlive(restore.id)
        if state is S.STOP_REQUESTED:
            transition(session, restore, S.STOPPED)
            return None
        if restore.attempts >= settings.max_attempts:
            transition(
                session,
                restore,
                S.FAILED,
                {
                    "errors_reason": FAILED_REASON,
                    "errors_diagnostics": (
                        f"The worker running this restore stopped responding {restore.attempts} "
                        "times; giving up. Check the worker logs, then start the restore again."
                    ),
                },
            )
            return None
        attempt = restore.attempts + 1
        if not repo.update_where_state(
            restore.id,
            [state],
            {"heartbeat_at": now, "attempts": attempt},
            heartbeat_was=restore.heartbeat_at,
        ):
            return None
        restore.attempts = attempt
        log.warning(
            "re-driving restore %s (attempt %d) after its worker stopped responding",
            restore.id,
            attempt,
        )
        return Claim(restore, attempt)


# -- running ----------------------------------------------------------------------------------


class _Stop(Exception):
    """A stop request arrived before the engine started."""


@dataclass
class _Run:
    db: Database
    settings: Settings
    claim: Claim
    _last_flush: float = 0.0
    _last_event: float = 0.0
    _stop_seen: bool = False
    _started: float = field(default_factory=time.monotonic)
    _progress: RestoreProgress | None = None

    @property
    def restore(self) -> Restore:
        return self.claim.restore

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
            self._enter(S.IN_PROGRESS)
            self._started = time.monotonic()
            destination = self.restore.destination_path
            result = restore_snapshot(
                vault,
                self.restore.snapshot_id,
                None if destination is None else Path(destination),
                overwrite=self.restore.overwrite_files,
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

    def _enter(self, target: RestoreState) -> None:
        """Move to a progress state; a pending stop request ends the run instead."""
        with self.db.transaction() as session:
            self._check_owner(session)
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
        self._last_flush = time.monotonic()
        values = self._counter_values()
        values["heartbeat_at"] = utcnow()
        try:
            with self.db.transaction() as session:
                repo = RestoreRepository(session)
                self._check_owner(session)
                repo.update_where_state(
                    self.restore.id, RESTORE_RUNNING_STATES | {S.STOP_REQUESTED}, values
                )
                self._stop_seen = repo.state_of(self.restore.id) == S.STOP_REQUESTED
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
        except (Unavailable, sa.exc.OperationalError) as exc:
            # Keep going: the database may be back before our heartbeat goes stale.
            log.warning("could not record progress of restore %s: %s", self.restore.id, exc)

    def _check_owner(self, session: Any) -> None:
        attempts = session.execute(
            sa.select(RESTORES.c.attempts).where(RESTORES.c.id == self.restore.id)
        ).scalar_one()
        if attempts != self.claim.attempt:
            raise LostOwnership(self.restore.id)

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

    def _finish(
        self, target: RestoreState, values: dict[str, Any], errors: list[RestoreError] | None = None
    ) -> str:
        values = dict(values)
        values["heartbeat_at"] = utcnow()
        with self.db.transaction() as session:
            self._check_owner(session)
            if not transition(session, self.restore, target, values):
                state = RestoreRepository(session).state_of(self.restore.id)
                log.warning(
                    "restore %s could not move to %s from %s", self.restore.id, target, state
                )
                return str(state)
            if errors:
                RestoreRepository(session).replace_errors(self.restore.id, errors)
        log.info("restore %s ended %s", self.restore.id, target)
        return str(target)


# -- the sweeper's part -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SweepReport:
    republished: int
    redriven: int


def sweep_restores(
    db: Database, dispatcher: Dispatcher, settings: Settings, now: datetime | None = None
) -> SweepReport:
    """Re-publish restores no worker has claimed (backing off 30 s, 30 s, 60 s, ...) and those
    whose worker died (stale heartbeat); the claim decides whether to take them over or fail."""
    now = now or utcnow()
    wait = timedelta(seconds=settings.sweep_after_seconds)
    with db.transaction() as session:
        repo = RestoreRepository(session)
        waiting = repo.waiting_starts([S.START_REQUESTED, S.STOP_REQUESTED], now - wait)
        stale = repo.stale_runs(
            now - timedelta(seconds=settings.heartbeat_timeout_seconds),
            [*RESTORE_RUNNING_STATES, S.STOP_REQUESTED],
        )
    due = [
        (run_id, agent_id)
        for run_id, agent_id, created, published in waiting
        if published is None
        or now - as_utc(published) >= max(wait, as_utc(published) - as_utc(created))
    ]
    published = [
        run_id
        for run_id, agent_id in due
        if dispatcher.publish("restore", run_id, agent_id=agent_id)
    ]
    if published:
        with db.transaction() as session:
            RestoreRepository(session).mark_published(published)
        log.info("re-published %d restores waiting for a worker", len(published))
    redriven = [
        run_id
        for run_id, agent_id in stale
        if dispatcher.publish("restore", run_id, agent_id=agent_id)
    ]
    if redriven:
        log.warning("re-drove %d restores whose worker stopped responding", len(redriven))
    return SweepReport(republished=len(published), redriven=len(redriven))
