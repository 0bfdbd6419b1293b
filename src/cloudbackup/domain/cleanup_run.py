"""Running one cleanup on a worker (acting as the agent): expire backups past their retention,
then let the engine forget their snapshots, prune unreferenced data and verify the vault.

Modelled on ``backup_run``: the claim is a compare-and-set on the state (a second delivery does
nothing); the heartbeat is written at least every ``progress_interval`` seconds and the same write
reads the state back, which is how a stop request reaches the engine; a run whose worker died is
taken over a bounded number of times, then failed.

Retention (OQ-40): a backup of a configuration with ``retention.days`` = N > 0 expires N days
after its ``ended_time``; 0 keeps it forever. Expiring sets ``restorable`` to false first (no new
restore can start from it), then the snapshot is forgotten. A backup a restore is reading from
is left for the next cleanup.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cloudbackup.domain.backup_run import LostOwnership, RunIsAlive
from cloudbackup.domain.cleanups import transition
from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.domain.errors import Unavailable
from cloudbackup.domain.states import (
    CLEANUP_FINAL_STATES,
    CLEANUP_RUNNING_STATES,
    CLEANUP_START_STATES,
    RESTORE_ACTIVE_STATES,
    CleanupState,
)
from cloudbackup.engine import (
    PruneResult,
    Stopped,
    VaultError,
    VaultLocked,
    VerifyReport,
    forget,
    open_vault,
    prune,
    verify,
)
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.run_repositories import CleanupRepository, RestoreRepository
from cloudbackup.store.tables import CLEANUPS, Cleanup, CleanupError, as_utc, utcnow

log = logging.getLogger("cloudbackup.run")

S = CleanupState
FAILED_REASON = "cleanup_failed"
DAMAGE_REASON = "vault_validation_failed"
DAMAGE_TYPE = "file_missing_blocks"


@dataclass(slots=True)
class Claim:
    """A cleanup this worker now owns: ``attempt`` identifies it in every later write."""

    cleanup: Cleanup
    attempt: int


def execute_cleanup(db: Database, settings: Settings, cleanup_id: str) -> str:
    """Run the cleanup if this delivery may; return a final state, `noop` or `busy`."""
    try:
        claim = claim_cleanup(db, settings, cleanup_id)
    except RunIsAlive:
        return "busy"
    if claim is None:
        return "noop"
    return _Run(db, settings, claim).run()


def claim_cleanup(db: Database, settings: Settings, cleanup_id: str) -> Claim | None:
    with db.transaction() as session:
        repo = CleanupRepository(session)
        cleanup = repo.get(cleanup_id)
        if cleanup is None:
            log.warning("cleanup %s does not exist; nothing to run", cleanup_id)
            return None
        state = S(cleanup.state)
        if state in CLEANUP_FINAL_STATES:
            return None
        if state is S.STOP_REQUESTED and cleanup.heartbeat_at is None:
            transition(session, cleanup, S.STOPPED)  # stopped before any worker picked it up
            return None
        now = utcnow()
        if state in CLEANUP_START_STATES:
            attempt = cleanup.attempts + 1
            if not transition(
                session, cleanup, S.QUEUED, {"heartbeat_at": now, "attempts": attempt}
            ):
                return None
            return Claim(cleanup, attempt)
        stale_before = now - timedelta(seconds=settings.heartbeat_timeout_seconds)
        if cleanup.heartbeat_at is not None and as_utc(cleanup.heartbeat_at) > stale_before:
            raise RunIsAlive(cleanup.id)
        if state is S.STOP_REQUESTED:
            transition(session, cleanup, S.STOPPED)
            return None
        if cleanup.attempts >= settings.max_attempts:
            transition(
                session,
                cleanup,
                S.FAILED,
                {
                    "errors_reason": FAILED_REASON,
                    "errors_diagnostics": None,
                },
            )
            return None
        attempt = cleanup.attempts + 1
        if not repo.update_where_state(
            cleanup.id,
            [state],
            {"heartbeat_at": now, "attempts": attempt},
            heartbeat_was=cleanup.heartbeat_at,
        ):
            return None
        cleanup.attempts = attempt
        log.warning("re-driving cleanup %s (attempt %d)", cleanup.id, attempt)
        return Claim(cleanup, attempt)


class _Stop(Exception):
    """A stop request arrived before the engine started."""


@dataclass
class _Run:
    db: Database
    settings: Settings
    claim: Claim
    _last_flush: float = 0.0
    _stop_seen: bool = False
    _forgotten: list[int] = field(default_factory=list)

    @property
    def cleanup(self) -> Cleanup:
        return self.claim.cleanup

    def run(self) -> str:
        try:
            self._enter_in_progress()
            expired = self._expire(utcnow())
            vault = open_vault(self.settings, self.cleanup.vault_id)
            self._forgotten = forget(vault, expired).removed if expired else []
            self._flush(force=True)
            pruned: PruneResult | None
            try:
                pruned = prune(vault, on_progress=self._on_progress, should_stop=self.should_stop)
            except VaultError:
                # Prune refuses to delete anything from a damaged vault; the verify below
                # names the damaged files, which is what the operator needs next.
                if self.settings.cleanup_verify_fraction <= 0:
                    raise
                log.warning("cleanup %s: vault is damaged, nothing pruned", self.cleanup.id)
                pruned = None
            report: VerifyReport | None = None
            if self.settings.cleanup_verify_fraction > 0:
                report = verify(
                    vault,
                    sample_fraction=min(self.settings.cleanup_verify_fraction, 1.0),
                    on_progress=self._on_progress,
                    should_stop=self.should_stop,
                )
        except (_Stop, Stopped):
            return self._finish(
                S.STOPPED, {"snapshot_ids": sorted(self._forgotten), "errors_diagnostics": None}
            )
        except LostOwnership:
            log.warning("cleanup %s was taken over by another worker", self.cleanup.id)
            return "lost"
        except VaultLocked:
            return self._finish(
                S.FAILED,
                {
                    "errors_reason": "vault_locked_by_another_cleanup",
                    "errors_diagnostics": None,
                },
            )
        except Exception as exc:  # the run failed: record why, so it is never left running
            log.exception("cleanup %s failed", self.cleanup.id)
            return self._finish(
                S.FAILED,
                {
                    "errors_reason": f"{FAILED_REASON}: {type(exc).__name__}: {exc}"[:500],
                    "errors_diagnostics": None,
                },
            )
        return self._complete(self._forgotten, pruned, report)

    def _enter_in_progress(self) -> None:
        with self.db.transaction() as session:
            self._check_owner(session)
            if self.cleanup.state == S.IN_PROGRESS:
                return  # re-driven: the previous owner already entered it
            values = {"heartbeat_at": utcnow(), "started_time": utcnow()}
            if not transition(session, self.cleanup, S.IN_PROGRESS, values):
                state = CleanupRepository(session).state_of(self.cleanup.id)
                if state == S.STOP_REQUESTED:
                    raise _Stop(self.cleanup.id)
                raise RuntimeError(f"cleanup {self.cleanup.id} is {state}, cannot run")
        self._last_flush = time.monotonic()

    def _expire(self, now: datetime) -> list[int]:
        """Flip the backups past their retention to not restorable; their snapshot ids."""
        with self.db.transaction() as session:
            self._check_owner(session)
            repo = CleanupRepository(session)
            due = [
                (backup_id, snapshot_id, restorable)
                for backup_id, snapshot_id, ended, days, restorable in repo.retained_backups(
                    self.cleanup.vault_id, now
                )
                if as_utc(ended) + timedelta(days=days) <= now
            ]
            busy = RestoreRepository(session).active_of_backups(
                [backup_id for backup_id, _, _ in due], RESTORE_ACTIVE_STATES
            )
            expired: list[int] = []
            for backup_id, snapshot_id, restorable in due:
                if backup_id in busy:
                    continue  # a restore reads it now; the next cleanup expires it
                if restorable:
                    repo.expire_backup(backup_id)
                expired.append(snapshot_id)
        if expired:
            log.info("cleanup %s expires snapshots %s", self.cleanup.id, expired)
        return expired

    # -- engine callbacks ---------------------------------------------------------------------
    def _on_progress(self, _: object) -> None:
        self._flush()

    def should_stop(self) -> bool:
        self._flush()
        return self._stop_seen

    def _flush(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._last_flush < self.settings.progress_interval:
            return
        self._last_flush = time.monotonic()
        try:
            with self.db.transaction() as session:
                repo = CleanupRepository(session)
                self._check_owner(session)
                repo.update_where_state(
                    self.cleanup.id,
                    CLEANUP_RUNNING_STATES | {S.STOP_REQUESTED},
                    {"heartbeat_at": utcnow()},
                )
                self._stop_seen = repo.state_of(self.cleanup.id) == S.STOP_REQUESTED
        except (Unavailable, sa.exc.OperationalError) as exc:
            log.warning("could not record progress of cleanup %s: %s", self.cleanup.id, exc)

    def _check_owner(self, session: Any) -> None:
        attempts = session.execute(
            sa.select(CLEANUPS.c.attempts).where(CLEANUPS.c.id == self.cleanup.id)
        ).scalar_one()
        if attempts != self.claim.attempt:
            raise LostOwnership(self.cleanup.id)

    def _complete(
        self, forgotten: list[int], pruned: PruneResult | None, report: VerifyReport | None
    ) -> str:
        damaged = [] if report is None else report.damaged
        files = sorted(
            {(f.snapshot_id, f.path) for chunk in damaged for f in chunk.files},
            key=lambda pair: (pair[0], pair[1]),
        )
        errors = [
            CleanupError(cleanup_id=self.cleanup.id, index=index, path=path, type=DAMAGE_TYPE)
            for index, (_, path) in enumerate(files)
        ]
        values: dict[str, Any] = {
            "snapshot_ids": sorted(set(forgotten) | {snapshot for snapshot, _ in files}),
            "bytes_before": pruned.bytes_before if pruned else 0,
            "bytes_after": pruned.bytes_after if pruned else 0,
            "errors_diagnostics": None,
        }
        if damaged:
            values.update(errors_count=len(errors), errors_reason=DAMAGE_REASON)
        target = S.COMPLETED_WITH_ERRORS if damaged else S.COMPLETED
        return self._finish(target, values, errors)

    def _finish(
        self, target: CleanupState, values: dict[str, Any], errors: list[CleanupError] | None = None
    ) -> str:
        values = dict(values)
        values["heartbeat_at"] = utcnow()
        with self.db.transaction() as session:
            self._check_owner(session)
            if not transition(session, self.cleanup, target, values):
                state = CleanupRepository(session).state_of(self.cleanup.id)
                log.warning(
                    "cleanup %s could not move to %s from %s", self.cleanup.id, target, state
                )
                return str(state)
            if errors:
                CleanupRepository(session).replace_errors(self.cleanup.id, errors)
        log.info("cleanup %s ended %s", self.cleanup.id, target)
        return str(target)


@dataclass(frozen=True, slots=True)
class SweepReport:
    republished: int
    redriven: int


def sweep_cleanups(
    db: Database, dispatcher: Dispatcher, settings: Settings, now: datetime | None = None
) -> SweepReport:
    """Re-publish cleanups no worker has claimed and those whose worker died."""
    now = now or utcnow()
    wait = timedelta(seconds=settings.sweep_after_seconds)
    with db.transaction() as session:
        repo = CleanupRepository(session)
        waiting = repo.waiting_starts([*CLEANUP_START_STATES, S.STOP_REQUESTED], now - wait)
        stale = repo.stale_runs(
            now - timedelta(seconds=settings.heartbeat_timeout_seconds),
            [*CLEANUP_RUNNING_STATES, S.STOP_REQUESTED],
        )
    due = [
        (run_id, agent_id)
        for run_id, agent_id, created, published in waiting
        if published is None
        or now - as_utc(published) >= max(wait, as_utc(published) - as_utc(created))
    ]
    published = [r for r, a in due if dispatcher.publish("cleanup", r, agent_id=a)]
    if published:
        with db.transaction() as session:
            CleanupRepository(session).mark_published(published)
    redriven = [r for r, a in stale if dispatcher.publish("cleanup", r, agent_id=a)]
    return SweepReport(republished=len(published), redriven=len(redriven))
