"""A backup handed to this agent: the engine runs here (walk, chunk, compress, encrypt) into
the agent's vault over the API, reported through B4 as a hosted worker would.

Checkpointed as a hosted backup is (``engine.checkpoints``, keyed by the backup's id, every
``checkpoint_seconds`` of the work item: the server's setting): an attempt re-driven after this
host was killed, or the next run of the configuration, stores again only what no checkpoint
lists, and its counters include what earlier attempts stored."""

from __future__ import annotations

from typing import Any

from cloudbackup.agent.host_run import HostRun
from cloudbackup.agent.reports import RunReports, replace
from cloudbackup.engine import CHECKPOINT_SECONDS, BackupProgress, StoringRate, Vault, run_backup

ERROR_REASON = "unable_to_process_some_files"
ERROR_DIAGNOSTICS = "Some files could not be backed up. Partial list follows."


class HostBackup(HostRun):
    """One handed-over backup run on this host."""

    noun = "backup"

    def __init__(
        self, reports: RunReports, vault: Vault, item: dict[str, Any], *, max_bps: int = 0
    ) -> None:
        super().__init__(reports, item)
        self.vault = vault
        self.max_bps = max_bps
        self.progress: BackupProgress | None = None
        self.rate = StoringRate()

    def enter(self, phase: str) -> None:
        super().enter(phase)
        if phase == "in_progress":
            self.rate.storing()

    def report(self, progress: BackupProgress) -> None:
        self.rate.report(progress)
        self.progress = progress
        self.check()

    def counters(self) -> list[dict[str, Any]]:
        p = self.progress
        if p is None:
            return [replace("/files_searched", 0)]
        return [
            replace("/files_searched", p.files_searched),
            replace("/bytes_searched", p.bytes_searched),
            replace("/files_backed_up", p.files_backed_up),
            replace("/bytes_backed_up", p.bytes_backed_up),
            replace("/bandwidth_avg_bps", self.rate.of(p.bytes_backed_up)),
        ]

    def work(self) -> str:
        result = run_backup(
            self.vault,
            list(self.item.get("inclusions") or []),
            list(self.item.get("exclusions") or []),
            on_progress=self.report,
            should_stop=self.should_stop,
            on_phase=lambda phase: self.enter(str(phase)),
            max_bps=self.max_bps,
            checkpoint=str(self.item["id"]),
            checkpoint_seconds=float(self.item.get("checkpoint_seconds") or CHECKPOINT_SECONDS),
        )
        operations = [
            replace("/files_searched", result.files_searched),
            replace("/bytes_searched", result.bytes_searched),
            replace("/files_backed_up", result.files_backed_up),
            replace("/bytes_backed_up", result.bytes_backed_up),
            replace("/bytes_in_db", result.bytes_in_db),
            replace("/bandwidth_avg_bps", self.rate.of(result.bytes_backed_up)),
            replace("/snapshot_id", result.snapshot_id),
        ]
        return self.complete(operations, result.errors, ERROR_REASON, ERROR_DIAGNOSTICS)
