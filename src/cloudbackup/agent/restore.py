"""A restore handed to this agent: the engine reads the snapshot from the agent's own vault over
the API and writes the selected files on this host, reported through R4."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cloudbackup.agent.host_run import HostRun
from cloudbackup.agent.reports import RunReports, replace
from cloudbackup.engine import FileError, RestoreProgress, Vault, restore_snapshot
from cloudbackup.engine.restore_selection import RestoreSelection

ERROR_REASON = "unable_to_process_some_files"  # what a hosted restore reports too
ERROR_DIAGNOSTICS = "Some files may not have been restored."
NOT_IN_BACKUP = "file_or_folder_missing"


class HostRestore(HostRun):
    """One handed-over restore run on this host."""

    noun = "restore"

    def __init__(self, reports: RunReports, vault: Vault, item: dict[str, Any]) -> None:
        super().__init__(reports, item)
        self.vault = vault
        self.progress: RestoreProgress | None = None

    def report(self, progress: RestoreProgress) -> None:
        self.progress = progress
        self.check()

    def counters(self) -> list[dict[str, Any]]:
        p = self.progress
        files, size = (0, 0) if p is None else (p.files_restored, p.bytes_restored)
        return [replace("/files_restored", files), replace("/bytes_restored", size)]

    def work(self) -> str:
        item = self.item
        selection = RestoreSelection(item.get("inclusions") or [], item.get("exclusions") or [])
        self.enter("preparing")
        self.enter("in_progress")
        destination = item.get("destination_path")
        result = restore_snapshot(
            self.vault,
            int(item["snapshot_id"]),
            None if destination is None else Path(str(destination)),
            overwrite=bool(item.get("overwrite")),
            resume=bool(item.get("resume")),
            on_progress=self.report,
            should_stop=self.should_stop,
            select=None if selection.everything else lambda e: selection.selects(e.path),
        )
        missing = [
            FileError(path=path, type=NOT_IN_BACKUP, description="The backup holds nothing here.")
            for path in selection.unmatched()
        ]
        operations = [
            replace("/files_restored", result.files_restored),
            replace("/bytes_restored", result.bytes_restored),
        ]
        errors = [*missing, *result.errors]
        return self.complete(operations, errors, ERROR_REASON, ERROR_DIAGNOSTICS)
