"""Running one backup on a hosted worker: the run protocol (``domain.run_protocol``) around
the engine's backup of the configuration's inclusions.

What only a backup does: a scheduled start that finds an earlier run of its configuration still
active is skipped; inclusions the agent's roots no longer allow are refused per file (the run
fails when none is left), the service's own files are excluded; the
result records the snapshot, and the per-file errors make it ``completed_with_errors``.
"""

from __future__ import annotations

import errno
import logging
from functools import cached_property
from typing import Any

from sqlalchemy.orm import Session

from cloudbackup.domain.anomalies import guard_backup
from cloudbackup.domain.backups import BACKUP_DIAGNOSTICS, BACKUP_ERROR_REASON, BACKUP_RUNS
from cloudbackup.domain.roots import HostRoots, RootsPolicy
from cloudbackup.domain.run_executor import RunExecutor, file_error_columns, give_up_after_deaths
from cloudbackup.domain.run_protocol import (
    Outcome,
    OwnedRun,
)
from cloudbackup.domain.run_states import BACKUP_MACHINE, BackupState
from cloudbackup.domain.vaults import open_service_vault
from cloudbackup.engine import (
    FILE_UNREADABLE,
    BackupProgress,
    BackupResult,
    FileError,
    StoringRate,
    run_backup,
)
from cloudbackup.store.repositories import BackupRepository, ConfigurationRepository
from cloudbackup.store.tables import Agent, Backup, BackupError

log = logging.getLogger("cloudbackup.run")

S = BackupState
FAILED_REASON = "backup_failed"


def _skip_if_overlapping(session: Session, backup: Backup) -> BackupState | None:
    """A scheduled start whose configuration still has an earlier run active is skipped."""
    if backup.state == S.START_SCHEDULED and BackupRepository(session).has_active(
        backup.configuration_id, BACKUP_MACHINE.active, before_seq=backup.seq
    ):
        return S.SKIPPED
    return None


class BackupRun(OwnedRun[Backup, BackupError, BackupState]):
    """A claimed backup: the engine's walk, chunking and storing, reported as it goes."""

    failed_reason = FAILED_REASON
    progress: BackupProgress | None

    @cached_property
    def _rate(self) -> StoringRate:
        """This attempt's storing rate (a run object serves one attempt)."""
        return StoringRate()

    @property
    def backup(self) -> Backup:
        return self.claim.run

    def enter(self, target: BackupState) -> None:
        super().enter(target)
        if target is S.IN_PROGRESS:
            self._rate.storing()

    def report(self, progress: BackupProgress) -> None:  # type: ignore[override]
        self._rate.report(progress)
        super().report(progress)

    def work(self) -> Outcome:
        with self.db.transaction() as session:
            config = ConfigurationRepository(session).get(self.backup.configuration_id)
            agent = session.get(Agent, config.agent_id) if config is not None else None
        assert config is not None  # configurations are soft-deleted, never removed
        roots = RootsPolicy.from_settings(self.settings).for_agent(
            agent.allowed_roots if agent is not None else []
        )
        inclusions, refused, protected = confine(list(config.inclusions or []), roots)
        if not inclusions:
            # Nothing may be read (the roots were narrowed since the configuration was made).
            reasons = " ".join(error.description or error.path for error in refused)
            values = {
                "errors_reason": FAILED_REASON,
                "errors_diagnostics": reasons[:4000],
                "errors_count": len(refused),
            }
            return self.finish(S.FAILED, values, self._error_rows(refused))
        result = run_backup(
            open_service_vault(self.db, self.settings, self.backup.vault_id),
            inclusions,
            [*(config.exclusions or []), *protected],
            on_progress=self.report,
            should_stop=self.should_stop,
            on_phase=lambda phase: self.enter(S(phase)),
            max_bps=self.settings.backup_max_bps,
            # A re-driven attempt, or the next run of the configuration, resumes from it.
            checkpoint=self.backup.id,
            checkpoint_seconds=self.settings.backup_checkpoint_seconds,
        )
        return self._complete(result, refused)

    def counter_values(self) -> dict[str, Any]:
        p = self.progress
        if p is None:
            return {}
        return {
            "files_searched": p.files_searched,
            "bytes_searched": p.bytes_searched,
            "files_backed_up": p.files_backed_up,
            "bytes_backed_up": p.bytes_backed_up,
            "errors_count": p.errors_count,
            "bandwidth_avg_bps": self._rate.of(p.bytes_backed_up),
        }

    def _complete(self, result: BackupResult, refused: list[FileError]) -> Outcome:
        values: dict[str, Any] = {
            "files_searched": result.files_searched,
            "bytes_searched": result.bytes_searched,
            "files_backed_up": result.files_backed_up,
            "bytes_backed_up": result.bytes_backed_up,
            "bytes_in_db": result.bytes_in_db,
            "snapshot_id": result.snapshot_id,
            "bandwidth_avg_bps": self._rate.of(result.bytes_backed_up),
        }
        errors = self._error_rows([*refused, *result.errors])
        outcome = self.complete(values, errors, BACKUP_ERROR_REASON, BACKUP_DIAGNOSTICS)
        if outcome in (Outcome.COMPLETED, Outcome.COMPLETED_WITH_ERRORS):
            self._guard(result)
        return outcome

    def _guard(self, result: BackupResult) -> None:
        """The ransomware guard, once the final state is committed: its failure is logged and
        leaves the backup as it ended (the backup itself succeeded)."""
        try:
            guard_backup(self.db, self.settings, self.backup.id, result)
        except Exception:
            log.exception("the ransomware guard could not check backup %s", self.backup.id)

    def _error_rows(self, problems: list[FileError]) -> list[BackupError]:
        return [
            BackupError(backup_id=self.backup.id, **file_error_columns(index, error))
            for index, error in enumerate(problems)
        ]


def confine(
    inclusions: list[dict[str, Any]], roots: HostRoots
) -> tuple[list[dict[str, Any]], list[FileError], list[dict[str, Any]]]:
    """Split the inclusions into those the agent's roots allow now and those refused (outside,
    through a link on the way, or reaching the service's own files), and list the service's
    own paths inside the kept folders as extra exclusions (never read, whatever the roots)."""
    kept: list[dict[str, Any]] = []
    refused: list[FileError] = []
    excluded: dict[str, None] = {}
    for item in inclusions:
        path = str(item.get("path", ""))
        refusal = roots.refusal("Inclusion", path, follow_last=False)
        if refusal is not None:
            refused.append(
                FileError(
                    path=path,
                    type=FILE_UNREADABLE,
                    code=errno.EACCES,
                    description=f"Not backed up: {refusal}",
                )
            )
            continue
        kept.append(item)
        if item.get("type") == "folder":
            excluded.update(dict.fromkeys(roots.protected_below(path)))
    return kept, refused, [{"type": "folder", "path": path} for path in excluded]


BACKUPS = RunExecutor(
    BACKUP_RUNS,
    BackupRun,
    give_up=give_up_after_deaths(FAILED_REASON, "backup"),
    instead_of_queuing=_skip_if_overlapping,
)
execute_backup = BACKUPS.execute
claim_backup = BACKUPS.claim
