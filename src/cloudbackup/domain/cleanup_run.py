"""Running one cleanup on a worker (acting as the agent): expire backups past their retention,
then let the engine forget their snapshots, prune unreferenced data and verify the vault.

Modelled on ``backup_run``, with what it shares with restores in ``run_worker``: the claim is a
compare-and-set on the state (a second delivery does nothing); the heartbeat is written at least
every ``progress_interval`` seconds and the same write reads the state back, which is how a stop
request reaches the engine; a run whose worker died is taken over a bounded number of times, then
failed.

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

from cloudbackup.domain.backup_run import LostOwnership, RunIsAlive
from cloudbackup.domain.cleanups import CLEANUP_RUNS, transition
from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.domain.run_worker import OwnedRun, RunClaim, SweepReport, claim_run, sweep_runs
from cloudbackup.domain.states import RESTORE_ACTIVE_STATES, CleanupState
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
from cloudbackup.store.tables import Cleanup, CleanupError, as_utc, utcnow

log = logging.getLogger("cloudbackup.run")

S = CleanupState
FAILED_REASON = "cleanup_failed"
DAMAGE_REASON = "vault_validation_failed"
DAMAGE_TYPE = "file_missing_blocks"


Claim = RunClaim[Cleanup, CleanupError, CleanupState]


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
    return claim_run(
        CLEANUP_RUNS,
        db,
        settings,
        cleanup_id,
        give_up=lambda _: {"errors_reason": FAILED_REASON, "errors_diagnostics": None},
    )


class _Stop(Exception):
    """A stop request arrived before the engine started."""


@dataclass
class _Run(OwnedRun[Cleanup, CleanupError, CleanupState]):
    _forgotten: list[int] = field(default_factory=list)

    @property
    def cleanup(self) -> Cleanup:
        return self.claim.run

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
            self.claim.check_owner(session)
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
            self.claim.check_owner(session)
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
        if force or time.monotonic() - self._last_flush >= self.settings.progress_interval:
            self._write_progress({})

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


def sweep_cleanups(
    db: Database, dispatcher: Dispatcher, settings: Settings, now: datetime | None = None
) -> SweepReport:
    """Re-publish cleanups no worker has claimed and those whose worker died."""
    return sweep_runs(CLEANUP_RUNS, db, dispatcher, settings, now)
