"""A restore handed to this agent: the engine reads the snapshot from the agent's own vault over
the API and writes the selected files on this host, reported through R4."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from cloudbackup.agent.host_run import VaultRun
from cloudbackup.agent.http_storage import HttpStorage
from cloudbackup.agent.read_ahead import Read
from cloudbackup.agent.reports import replace
from cloudbackup.engine import FileError, RestoreProgress, Vault, restore_snapshot
from cloudbackup.engine.packs import pack_name
from cloudbackup.engine.restore_selection import RestoreSelection

ERROR_REASON = "unable_to_process_some_files"  # what a hosted restore reports too
ERROR_DIAGNOSTICS = "Some files may not have been restored."
NOT_IN_BACKUP = "file_or_folder_missing"


def planned_reads(vault: Vault, snapshot_id: int, selection: RestoreSelection) -> Iterator[Read]:
    """The chunk reads ``restore_snapshot`` makes, in its order: the chunks of every selected
    file, in walk order (a chunk the index lacks is left to the engine to report)."""
    index = vault.index()
    for entry in vault.iter_entries(snapshot_id, index=index):
        if entry.kind != "file" or not (selection.everything or selection.selects(entry.path)):
            continue
        for chunk_id in entry.chunks:
            location = index.get(chunk_id)
            if location is not None:
                yield pack_name(location.pack), location.offset, location.length


class HostRestore(VaultRun):
    """One handed-over restore run on this host."""

    noun = "restore"
    progress: RestoreProgress | None = None

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
        snapshot_id = int(item["snapshot_id"])
        with self._reading_ahead(snapshot_id):
            result = restore_snapshot(
                self.vault,
                snapshot_id,
                None if destination is None else Path(str(destination)),
                overwrite=bool(item.get("overwrite")),
                resume=bool(item.get("resume")),
                run_key=str(item["id"]),  # a re-driven attempt removes this run's leftovers
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

    def _reading_ahead(self, snapshot_id: int) -> AbstractContextManager[object]:
        """Over the API, the chunks are fetched ahead, many to a request."""
        storage = self.vault.storage
        if not isinstance(storage, HttpStorage):
            return nullcontext()
        item = self.item
        # Its own selection: the engine's records the inclusions it met, in the engine's thread.
        selection = RestoreSelection(item.get("inclusions") or [], item.get("exclusions") or [])
        return storage.reading_ahead(planned_reads(self.vault, snapshot_id, selection))
