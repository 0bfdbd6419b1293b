"""What a backup run reports: its counters while it runs, its storing rate, and its result."""

from __future__ import annotations

import time

import msgspec

from cloudbackup.engine.errors import FileError


class BackupProgress(msgspec.Struct, frozen=True):
    """Counters of a running backup at one instant.

    ``bytes_completed`` counts scanned bytes of the files already processed (read, skipped as
    unchanged, or failed), so it rises from 0 to ``total_bytes`` and never past it.
    """

    files_searched: int
    bytes_searched: int
    files_backed_up: int
    bytes_backed_up: int
    bytes_completed: int
    total_bytes: int
    errors_count: int


class StoringRate:
    """Bytes one attempt of a backup stored per second of storing: the scan's time does not
    count, nor what earlier attempts stored (a resumed run's first report while storing counts
    them). Hosted workers and remote agents report it as ``bandwidth_avg_bps``."""

    def __init__(self) -> None:
        self._since: float | None = None  # when the attempt began storing
        self._resumed_bytes: int | None = None

    def storing(self) -> None:
        """The attempt begins storing (it enters ``in_progress``); later calls change nothing."""
        if self._since is None:
            self._since = time.monotonic()

    def report(self, progress: BackupProgress) -> None:
        if self._since is not None and self._resumed_bytes is None:
            self._resumed_bytes = progress.bytes_backed_up

    def of(self, stored: int) -> int:
        """The rate, given the attempt's ``bytes_backed_up`` so far."""
        if self._since is None:
            return 0
        stored -= self._resumed_bytes or 0
        seconds = time.monotonic() - self._since
        return int(stored / seconds) if seconds > 0 else stored


class ChangeMeasures(msgspec.Struct, frozen=True, kw_only=True):
    """A backup against the previous snapshot of the same inclusions (what the ransomware guard
    judges): that snapshot's files, those whose content changed, those gone; then the plaintext
    and stored bytes of the new file data."""

    previous_files: int = 0
    files_changed: int = 0
    files_deleted: int = 0
    new_plain_bytes: int = 0
    new_stored_bytes: int = 0


class BackupResult(ChangeMeasures, frozen=True, kw_only=True):
    """What a finished run reports, its change measures included; ``bytes_in_db`` is the size of
    the snapshot's metadata."""

    snapshot_id: int
    files_searched: int
    bytes_searched: int
    files_backed_up: int
    bytes_backed_up: int
    bytes_in_db: int
    errors: list[FileError]
    duration_seconds: float
