"""Running one cleanup on a worker (acting as the agent): expire backups past their retention,
then let the engine forget their snapshots, prune unreferenced data and verify the vault.

The claim, heartbeat, stop check, hand-back and finish are the run protocol every kind shares
(``domain.run_protocol``).

Retention (OQ-40): a backup of a configuration with ``retention.days`` = N > 0 expires N days
after its ``ended_time``; 0 keeps it forever. Expiring sets ``restorable`` to false first (no new
restore can start from it), then the snapshot is forgotten. A backup a restore is reading from
is left for the next cleanup, and so is one an open anomaly holds (``domain.anomalies``).

Checkpoints (``engine.checkpoints``, what an unfinished backup stored): a checkpoint stays while
its backup is active and while it is the work a later run of its configuration may resume from;
it is collected (then prune collects the data only it listed) once its backup has been final for
:data:`ORPHAN_AFTER` and a later backup of the configuration completed, or, if no backup row
names it, once it is that old.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from cloudbackup.domain.cleanups import CLEANUP_RUNS
from cloudbackup.domain.run_executor import RunExecutor
from cloudbackup.domain.run_protocol import Outcome, OwnedRun, RunClaim
from cloudbackup.domain.run_states import (
    BACKUP_MACHINE,
    RESTORE_MACHINE,
    BackupState,
    CleanupState,
)
from cloudbackup.domain.vaults import open_service_vault
from cloudbackup.engine import (
    PruneResult,
    Vault,
    VaultError,
    VaultLocked,
    VerifyReport,
    delete_checkpoint,
    forget,
    list_checkpoints,
    prune,
    verify,
)
from cloudbackup.settings import Settings
from cloudbackup.store.anomalies import AnomalyRepository
from cloudbackup.store.db import Database
from cloudbackup.store.run_repositories import CleanupRepository, RestoreRepository
from cloudbackup.store.tables import Backup, Cleanup, CleanupError, as_utc, utcnow

log = logging.getLogger("cloudbackup.run")

S = CleanupState
S_B = BackupState
# A snapshot no backup row names is collected once it is this old: younger, its run may be
# recording it right now.
ORPHAN_AFTER = timedelta(hours=1)
FAILED_REASON = "cleanup_failed"
DAMAGE_REASON = "vault_validation_failed"
DAMAGE_TYPE = "file_missing_blocks"


CleanupClaim = RunClaim[Cleanup, CleanupError, CleanupState]


class CleanupRun(OwnedRun[Cleanup, CleanupError, CleanupState]):
    """A claimed cleanup: expire, forget, prune, verify."""

    def __init__(self, db: Database, settings: Settings, claim: CleanupClaim) -> None:
        super().__init__(db, settings, claim)
        self._forgotten: list[int] = []

    @property
    def cleanup(self) -> Cleanup:
        return self.claim.run

    def work(self) -> Outcome:
        self.enter(S.IN_PROGRESS)
        now = utcnow()
        expired = self._expire(now)
        vault = open_service_vault(self.db, self.settings, self.cleanup.vault_id)
        expired += self._orphans(vault, now)
        self._forgotten = forget(vault, expired).removed if expired else []
        for key in self._stale_checkpoints(list_checkpoints(vault), now):
            delete_checkpoint(vault, key)
        self.flush()
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
        return self._complete(self._forgotten, pruned, report)

    def stopped_values(self) -> dict[str, Any]:
        return {"snapshot_ids": sorted(self._forgotten), "errors_diagnostics": None}

    def failed_values(self, exc: Exception, reference: str) -> dict[str, Any]:
        if isinstance(exc, VaultLocked):
            return {"errors_reason": "vault_locked_by_another_cleanup", "errors_diagnostics": None}
        # A cleanup's diagnostics stay null (spec §6): the reason carries the reference.
        reason = f"{FAILED_REASON}: {type(exc).__name__} (operator reference {reference})"
        return {"errors_reason": reason, "errors_diagnostics": None}

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
            due_ids = [backup_id for backup_id, _, _ in due]
            busy = RestoreRepository(session).active_of_backups(due_ids, RESTORE_MACHINE.active)
            # An open anomaly (the ransomware guard) holds its configuration's older backups.
            held = AnomalyRepository(session).held_among(due_ids)
            expired: list[int] = []
            for backup_id, snapshot_id, restorable in due:
                if backup_id in busy or backup_id in held:
                    continue  # a restore reads it now, or it is held; a later cleanup expires it
                if restorable:
                    repo.expire_backup(backup_id)
                expired.append(snapshot_id)
            # Never forget what a restorable backup still names (two rows naming one snapshot
            # can only come from a forged report, but its data must outlive the forgery).
            kept = repo.still_referenced(self.cleanup.vault_id, expired)
            expired = [snapshot_id for snapshot_id in expired if snapshot_id not in kept]
        if expired:
            log.info("cleanup %s expires snapshots %s", self.cleanup.id, expired)
        return expired

    def _orphans(self, vault: Vault, now: datetime) -> list[int]:
        """Snapshots of the vault no backup row names, older than :data:`ORPHAN_AFTER` (a run
        that wrote its snapshot and died before recording it): collected, not kept for good."""
        with self.db.read() as session:
            named = CleanupRepository(session).snapshot_ids_of_vault(self.cleanup.vault_id)
        cutoff_ns = int((now - ORPHAN_AFTER).timestamp() * 1e9)
        orphans = []
        for snapshot_id in vault.list_snapshots():
            if snapshot_id in named:
                continue
            try:
                created_ns = vault.read_info(snapshot_id).created_ns
            except Exception:  # unreadable: verify reports it, forget must not guess
                continue
            if created_ns < cutoff_ns:
                orphans.append(snapshot_id)
        if orphans:
            log.info("cleanup %s collects snapshots no backup names: %s", self.cleanup.id, orphans)
        return orphans

    def _stale_checkpoints(self, listed: dict[str, int], now: datetime) -> list[str]:
        """Of the ``listed`` checkpoints (key → newest segment's time, ns), those nothing will
        resume from any more (see the module's docstring)."""
        if not listed:
            return []
        cutoff = now - ORPHAN_AFTER
        with self.db.read() as session:
            runs = {
                row.id: row
                for row in session.execute(
                    sa.select(
                        col(Backup.id),
                        col(Backup.configuration_id),
                        col(Backup.seq),
                        col(Backup.state),
                        col(Backup.ended_time),
                    ).where(
                        col(Backup.id).in_(listed), col(Backup.vault_id) == self.cleanup.vault_id
                    )
                )
            }
            completed = {
                configuration_id: seq
                for configuration_id, seq in session.execute(
                    sa.select(col(Backup.configuration_id), sa.func.max(col(Backup.seq)))
                    .where(
                        col(Backup.configuration_id).in_(
                            {r.configuration_id for r in runs.values()}
                        ),
                        col(Backup.state).in_([S_B.COMPLETED, S_B.COMPLETED_WITH_ERRORS]),
                    )
                    .group_by(col(Backup.configuration_id))
                )
            }
        stale = []
        for key, written_ns in listed.items():
            run = runs.get(key)
            if run is None:
                if written_ns < int(cutoff.timestamp() * 1e9):
                    stale.append(key)
            elif (
                BACKUP_MACHINE.is_final(run.state)
                and run.ended_time is not None
                and as_utc(run.ended_time) <= cutoff
                and completed.get(run.configuration_id, -1) > run.seq
            ):
                stale.append(key)
        if stale:
            log.info("cleanup %s collects checkpoints of %s", self.cleanup.id, sorted(stale))
        return stale

    # -- engine callbacks ---------------------------------------------------------------------
    def _on_progress(self, _: object) -> None:
        self.should_stop()  # flushes the heartbeat when due; the engine asks for stops itself

    def _complete(
        self, forgotten: list[int], pruned: PruneResult | None, report: VerifyReport | None
    ) -> Outcome:
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
        return self.finish(target, values, errors)


CLEANUPS = RunExecutor(
    CLEANUP_RUNS,
    CleanupRun,
    give_up=lambda _: {"errors_reason": FAILED_REASON, "errors_diagnostics": None},
)
execute_cleanup = CLEANUPS.execute
claim_cleanup = CLEANUPS.claim
