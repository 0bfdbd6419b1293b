"""Running one backup on a worker: claim it, drive the engine, keep the row true, finish it.

The claim is a compare-and-set on the state, so a second delivery of the same task does nothing.
A run whose worker died (stale heartbeat) is taken over a bounded number of times, then failed.
Counters and the heartbeat are written at least every ``progress_interval`` seconds, and the
same write reads the state back, which is how a stop request reaches the running engine.

A worker that shuts down hands its run back (:func:`request_hand_back`): the run stops, clears
its heartbeat, and the next delivery takes it over at once, without counting an attempt (a
deliberate shutdown is not a failure). Writes that find the database unreachable are retried for
``database_retry_seconds`` so a short outage does not cost a whole run.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import sqlalchemy as sa

from cloudbackup.domain.backups import BACKUP_DIAGNOSTICS, BACKUP_ERROR_REASON, transition
from cloudbackup.domain.configurations import leads_outside_roots
from cloudbackup.domain.errors import Unavailable
from cloudbackup.domain.events import record_backup_event
from cloudbackup.domain.states import (
    ACTIVE_STATES,
    FINAL_STATES,
    RUNNING_STATES,
    START_STATES,
    BackupState,
)
from cloudbackup.engine import (
    FILE_UNREADABLE,
    BackupProgress,
    BackupResult,
    BackupStopped,
    FileError,
    open_vault,
    run_backup,
)
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import BackupRepository, ConfigurationRepository
from cloudbackup.store.tables import Backup, BackupError, as_utc, utcnow

log = logging.getLogger("cloudbackup.run")

S = BackupState
_PHASE_ORDER = [S.QUEUED, S.PREPARING, S.IN_PROGRESS]
PROGRESS_EVENT_SECONDS = 5.0
FAILED_REASON = "backup_failed"
T = TypeVar("T")

# Set when this worker process is shutting down: its running backup hands itself back.
_hand_back = threading.Event()
_hand_back_since = 0.0
_running = threading.Event()
# A process still alive this long after a shutdown signal (a stray signal, not a shutdown)
# takes work again rather than handing every task back forever.
HAND_BACK_HOLD_SECONDS = 60.0


def request_hand_back() -> bool:
    """Ask this process's running backup to hand itself back; False when none is running."""
    global _hand_back_since
    _hand_back_since = time.monotonic()
    _hand_back.set()
    return _running.is_set()


def _shutting_down() -> bool:
    if _hand_back.is_set() and time.monotonic() - _hand_back_since > HAND_BACK_HOLD_SECONDS:
        _hand_back.clear()
    return _hand_back.is_set()


@dataclass(slots=True)
class Claim:
    """A run this worker now owns: ``attempt`` identifies it in every later write."""

    backup: Backup
    attempt: int
    inclusions: list[dict[str, Any]]
    exclusions: list[dict[str, Any]]


class RunIsAlive(Exception):
    """Another worker is running this backup and its heartbeat is fresh: try again later."""


class LostOwnership(Exception):
    """Another worker took the run over (this one was presumed dead); stop without writing."""


class HandBack(Exception):
    """The worker is shutting down: give the run back so another worker continues it."""


def _retrying(settings: Settings, what: str, write: Callable[[], T]) -> T:
    """Run ``write`` (one transaction), retrying while the database is unreachable."""
    deadline = time.monotonic() + settings.database_retry_seconds
    delay = 0.2
    while True:
        try:
            return write()
        except Unavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("database unreachable while %s, retrying in %.1f s: %s", what, delay, exc)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def execute_backup(db: Database, settings: Settings, backup_id: str) -> str:
    """Run the backup if this delivery may; return what happened: a final state, `noop` (nothing
    to do), `busy` (another worker's run looks alive; the caller retries after the heartbeat
    timeout) or `handed_back` (this worker is shutting down; the caller requeues the task)."""
    if _shutting_down():
        return "handed_back"  # a worker on its way out claims nothing new
    _running.set()  # from here a shutdown signal is answered by handing the run back
    try:
        claim = _retrying(
            settings, f"claiming backup {backup_id}", lambda: claim_backup(db, settings, backup_id)
        )
        if claim is None:
            return "noop"
        return _Run(db, settings, claim).run()
    except RunIsAlive:
        return "busy"
    finally:
        _running.clear()


def claim_backup(db: Database, settings: Settings, backup_id: str) -> Claim | None:
    with db.transaction() as session:
        repo = BackupRepository(session)
        backup = repo.get(backup_id)
        if backup is None:
            log.warning("backup %s does not exist; nothing to run", backup_id)
            return None
        state = S(backup.state)
        if state in FINAL_STATES:
            return None
        if state is S.STOP_REQUESTED and backup.heartbeat_at is None:
            transition(session, backup, S.STOPPED)  # stopped before any worker picked it up
            return None
        now = utcnow()
        if state in START_STATES:
            if state is S.START_SCHEDULED and repo.has_active(
                backup.configuration_id, ACTIVE_STATES, before_seq=backup.seq
            ):
                transition(session, backup, S.SKIPPED)
                return None
            attempt = backup.attempts + 1
            if not transition(
                session, backup, S.QUEUED, {"heartbeat_at": now, "attempts": attempt}
            ):
                return None
        else:
            # Claimed before: a duplicate delivery, a re-drive of a run whose worker died, or a
            # run handed back by a worker that shut down (heartbeat cleared).
            heartbeat = backup.heartbeat_at
            handed_back = heartbeat is None
            stale_before = now - timedelta(seconds=settings.heartbeat_timeout_seconds)
            if heartbeat is not None and as_utc(heartbeat) > stale_before:
                raise RunIsAlive(backup.id)
            if state is S.STOP_REQUESTED:
                transition(session, backup, S.STOPPED)
                return None
            if not handed_back and backup.attempts >= settings.max_attempts:
                transition(
                    session,
                    backup,
                    S.FAILED,
                    {
                        "errors_reason": FAILED_REASON,
                        "errors_diagnostics": (
                            f"The worker running this backup stopped responding {backup.attempts} "
                            "times; giving up. Check the worker logs, then start the backup again."
                        ),
                    },
                )
                return None
            # The attempt number is the owner's token: a dead owner's writes must fail, so a
            # take-over increments it; a handed-back run's owner is gone for good and the run
            # keeps its number (a deliberate shutdown does not use up an attempt).
            attempt = backup.attempts if handed_back else backup.attempts + 1
            taken = repo.update_where_state(
                backup.id,
                [state],
                {"heartbeat_at": now, "attempts": attempt},
                heartbeat_was=backup.heartbeat_at,
            )
            if not taken:
                return None
            backup.attempts = attempt
            if handed_back:
                log.info("taking over backup %s, handed back by a worker that shut down", backup.id)
            else:
                log.warning(
                    "re-driving backup %s (attempt %d) after its worker stopped responding",
                    backup.id,
                    attempt,
                )
        config = ConfigurationRepository(session).get(backup.configuration_id)
        assert config is not None
        return Claim(backup, attempt, list(config.inclusions or []), list(config.exclusions or []))


@dataclass
class _Run:
    db: Database
    settings: Settings
    claim: Claim
    _last_flush: float = 0.0
    _last_event: float = 0.0
    _stop_seen: bool = False
    _progress: BackupProgress | None = None
    _state: BackupState = field(init=False)

    def __post_init__(self) -> None:
        self._state = S(self.claim.backup.state)

    @property
    def backup(self) -> Backup:
        return self.claim.backup

    def run(self) -> str:
        inclusions, refused = confine(self.claim.inclusions, self.settings.allowed_root_list)
        try:
            result = run_backup(
                open_vault(self.settings, self.backup.vault_id),
                inclusions,
                self.claim.exclusions,
                on_progress=self.on_progress,
                should_stop=self.should_stop,
                on_phase=self.on_phase,
                max_bps=self.settings.backup_max_bps,
            )
        except BackupStopped:
            return self._finish(S.STOPPED, self._counter_values())
        except LostOwnership:
            log.warning("backup %s was taken over by another worker", self.backup.id)
            return "lost"
        except HandBack:
            return self._release()
        except Exception as exc:  # the run failed: record why, so it is never left running
            log.exception("backup %s failed", self.backup.id)
            values = self._counter_values()
            values.update(
                errors_reason=FAILED_REASON, errors_diagnostics=f"{type(exc).__name__}: {exc}"
            )
            return self._finish(S.FAILED, values)
        return self._complete(result, refused)

    # -- engine callbacks ----------------------------------------------------------------------
    def on_phase(self, phase: str) -> None:
        if _hand_back.is_set():
            raise HandBack(self.backup.id)
        target = S(phase)
        if self._state not in _PHASE_ORDER or _PHASE_ORDER.index(target) <= _PHASE_ORDER.index(
            self._state
        ):
            return  # a re-driven run is already past this phase, or a stop is pending

        def write() -> bool:
            with self.db.transaction() as session:
                self._check_owner(session)
                values: dict[str, Any] = {}
                if target is S.PREPARING and self.backup.started_time is None:
                    values["started_time"] = utcnow()
                if not transition(session, self.backup, target, values):
                    self._stop_seen = (
                        BackupRepository(session).state_of(self.backup.id) == S.STOP_REQUESTED
                    )
                    return False
            return True

        if _retrying(self.settings, f"recording {target} of backup {self.backup.id}", write):
            self._state = target

    def on_progress(self, progress: BackupProgress) -> None:
        self._progress = progress
        if _hand_back.is_set():
            raise HandBack(self.backup.id)
        if time.monotonic() - self._last_flush >= self.settings.progress_interval:
            self._flush()

    def should_stop(self) -> bool:
        if _hand_back.is_set():
            raise HandBack(self.backup.id)
        if time.monotonic() - self._last_flush >= self.settings.progress_interval:
            self._flush()
        return self._stop_seen

    # -- writes -------------------------------------------------------------------------------
    def _counter_values(self) -> dict[str, Any]:
        p = self._progress
        if p is None:
            return {}
        return {
            "files_searched": p.files_searched,
            "bytes_searched": p.bytes_searched,
            "files_backed_up": p.files_backed_up,
            "bytes_backed_up": p.bytes_backed_up,
        }

    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        values = self._counter_values()
        values["heartbeat_at"] = utcnow()
        try:
            with self.db.transaction() as session:
                repo = BackupRepository(session)
                self._check_owner(session)
                repo.update_where_state(self.backup.id, RUNNING_STATES | {S.STOP_REQUESTED}, values)
                self._stop_seen = repo.state_of(self.backup.id) == S.STOP_REQUESTED
                if (
                    self._progress is not None
                    and time.monotonic() - self._last_event >= PROGRESS_EVENT_SECONDS
                ):
                    self._last_event = time.monotonic()
                    p = self._progress
                    record_backup_event(
                        session,
                        self.backup,
                        "backup_progress",
                        extra={
                            "bytes_completed": p.bytes_completed,
                            "bytes_remaining": max(p.total_bytes - p.bytes_completed, 0),
                            "total_bytes": p.total_bytes,
                        },
                    )
        except (Unavailable, sa.exc.OperationalError) as exc:
            # Keep going: the database may be back before our heartbeat goes stale.
            log.warning("could not record progress of backup %s: %s", self.backup.id, exc)

    def _check_owner(self, session: Any) -> None:
        if BackupRepository(session).attempts_of(self.backup.id) != self.claim.attempt:
            raise LostOwnership(self.backup.id)

    def _release(self) -> str:
        """Clear the heartbeat so the next delivery takes the run over at once."""

        def write() -> None:
            with self.db.transaction() as session:
                self._check_owner(session)
                BackupRepository(session).update_where_state(
                    self.backup.id, RUNNING_STATES | {S.STOP_REQUESTED}, {"heartbeat_at": None}
                )

        try:
            write()
        except (Unavailable, LostOwnership) as exc:
            # Nothing to hand over (taken over already), or the database is away: the stale
            # heartbeat then lets the sweeper re-drive it.
            log.warning("backup %s could not be handed back cleanly: %s", self.backup.id, exc)
        else:
            log.info("backup %s handed back: this worker is shutting down", self.backup.id)
        return "handed_back"

    def _complete(self, result: BackupResult, refused: list[FileError]) -> str:
        values: dict[str, Any] = {
            "files_searched": result.files_searched,
            "bytes_searched": result.bytes_searched,
            "files_backed_up": result.files_backed_up,
            "bytes_backed_up": result.bytes_backed_up,
            "bytes_in_db": result.bytes_in_db,
            "snapshot_id": result.snapshot_id,
            "bandwidth_avg_bps": int(result.bytes_backed_up / result.duration_seconds)
            if result.duration_seconds > 0
            else result.bytes_backed_up,
        }
        errors = [
            BackupError(
                backup_id=self.backup.id,
                index=index,
                path=error.path,
                type=error.type,
                exception_code=error.code,
                exception_description=error.description,
                exception_details=error.details,
            )
            for index, error in enumerate([*refused, *result.errors])
        ]
        if errors:
            values.update(
                errors_count=len(errors),
                errors_reason=BACKUP_ERROR_REASON,
                errors_diagnostics=BACKUP_DIAGNOSTICS,
            )
        target = S.COMPLETED_WITH_ERRORS if errors else S.COMPLETED
        return self._finish(target, values, errors)

    def _finish(
        self, target: BackupState, values: dict[str, Any], errors: list[BackupError] | None = None
    ) -> str:
        values = dict(values)

        def write() -> str | None:
            values["heartbeat_at"] = utcnow()
            with self.db.transaction() as session:
                self._check_owner(session)
                if not transition(session, self.backup, target, values):
                    return str(BackupRepository(session).state_of(self.backup.id))
                if errors:
                    BackupRepository(session).replace_errors(
                        self.backup.id, [BackupError(**e.model_dump()) for e in errors]
                    )
            return None

        try:
            other = _retrying(self.settings, f"ending backup {self.backup.id}", write)
        except LostOwnership:
            log.warning("backup %s was taken over by another worker", self.backup.id)
            return "lost"
        if other is not None:
            log.warning("backup %s could not move to %s from %s", self.backup.id, target, other)
            return other
        log.info("backup %s ended %s", self.backup.id, target)
        return str(target)


def confine(
    inclusions: list[dict[str, Any]], roots: tuple[str, ...]
) -> tuple[list[dict[str, Any]], list[FileError]]:
    """Drop inclusions that lead out of the allowed roots through a symbolic link."""
    if not roots:
        return inclusions, []
    kept: list[dict[str, Any]] = []
    refused: list[FileError] = []
    for item in inclusions:
        path = str(item.get("path", ""))
        real = leads_outside_roots(path, roots)
        if real is not None:
            refused.append(
                FileError(
                    path=path,
                    type=FILE_UNREADABLE,
                    code=errno.EACCES,
                    description=(
                        f"Not backed up: the path leads to {real}, outside the allowed roots."
                    ),
                )
            )
        else:
            kept.append(item)
    return kept, refused
