"""A backup handed to this agent: the engine runs here (walk, chunk, compress, encrypt) into
the agent's vault over the API, reported through B4 as a hosted worker would.

Checkpointed as a hosted backup is (``engine.checkpoints``, keyed by the backup's id, every
``checkpoint_seconds`` of the work item: the server's setting): an attempt re-driven after this
host was killed, or the next run of the configuration, stores again only what no checkpoint
lists, and its counters include what earlier attempts stored."""

from __future__ import annotations

import time
from typing import Any

from cloudbackup.agent.host_run import HostRun
from cloudbackup.agent.reports import RunReports, replace
from cloudbackup.engine import CHECKPOINT_SECONDS, BackupProgress, Vault, run_backup

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
        self.storing_since: float | None = None
        # Bytes earlier attempts stored (a resumed run's first report while storing counts them).
        self.resumed_bytes: int | None = None

    def enter(self, phase: str) -> None:
        super().enter(phase)
        if phase == "in_progress" and self.storing_since is None:
            self.storing_since = time.monotonic()

    def report(self, progress: BackupProgress) -> None:
        if self.storing_since is not None and self.resumed_bytes is None:
            self.resumed_bytes = progress.bytes_backed_up
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
            replace("/bandwidth_avg_bps", self.bandwidth(p.bytes_backed_up)),
        ]

    def bandwidth(self, stored: int) -> int:
        """Bytes stored per second of storing so far, by this attempt."""
        if self.storing_since is None:
            return 0
        stored -= self.resumed_bytes or 0
        seconds = time.monotonic() - self.storing_since
        return int(stored / seconds) if seconds > 0 else stored

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
            replace("/bandwidth_avg_bps", self.bandwidth(result.bytes_backed_up)),
            replace("/snapshot_id", result.snapshot_id),
        ]
        return self.complete(operations, result.errors, ERROR_REASON, ERROR_DIAGNOSTICS)
