"""A backup handed to this agent: the engine runs here (walk, chunk, compress, encrypt) into
the agent's vault over the API, and the run is reported through B4 as a hosted worker would:
the phases in order, counters every second from a thread of their own (which also reads the
state back, so a stop request reaches the engine within about a second), then the result."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from cloudbackup.agent.reports import RunReports, StopRequested, Superseded, now_iso, replace
from cloudbackup.agent.session import ApiRefused
from cloudbackup.engine import BackupProgress, BackupResult, BackupStopped, Vault, run_backup

log = logging.getLogger("cloudbackup.agent")

PHASES = ["queued", "preparing", "in_progress"]
REPORT_SECONDS = 1.0
ERROR_REASON = "unable_to_process_some_files"
ERROR_DIAGNOSTICS = "Some files could not be backed up. Partial list follows."


class HostBackup:
    """One handed-over backup (a channel item) run on this host."""

    def __init__(
        self, reports: RunReports, vault: Vault, item: dict[str, Any], *, max_bps: int = 0
    ) -> None:
        self.reports = reports
        self.max_bps = max_bps
        self.vault = vault
        self.item = item
        self.state = str(item.get("state", "queued"))
        self.progress: BackupProgress | None = None
        self.storing_since: float | None = None
        self.stop_seen = False
        self.superseded = False
        self._done = threading.Event()

    # -- the engine's callbacks ---------------------------------------------------------------
    def enter(self, phase: str) -> None:
        if phase not in PHASES or PHASES.index(phase) <= PHASES.index(self.state):
            return  # a re-driven run may be past it already
        operations = [replace("/state", phase)]
        if self.state == "queued":
            operations.append(replace("/started_time", now_iso()))
        self.reports.patch(operations)
        self.state = phase
        if phase == "in_progress":
            self.storing_since = time.monotonic()

    def report(self, progress: BackupProgress) -> None:
        self.progress = progress
        self._check()

    def should_stop(self) -> bool:
        self._check()
        return self.stop_seen

    def _check(self) -> None:
        if self.superseded:
            raise Superseded(self.reports.url)

    # -- the reporting thread -----------------------------------------------------------------
    def counters(self) -> list[dict[str, Any]]:
        p = self.progress
        if p is None:
            return [replace("/files_searched", 0)]
        stored = p.bytes_backed_up
        return [
            replace("/files_searched", p.files_searched),
            replace("/bytes_searched", p.bytes_searched),
            replace("/files_backed_up", p.files_backed_up),
            replace("/bytes_backed_up", stored),
            replace("/bandwidth_avg_bps", self.bandwidth(stored)),
        ]

    def bandwidth(self, stored: int) -> int:
        if self.storing_since is None:
            return 0
        seconds = time.monotonic() - self.storing_since
        return int(stored / seconds) if seconds > 0 else stored

    def _beat(self) -> None:
        while not self._done.wait(REPORT_SECONDS):
            try:
                self.reports.patch(self.counters())
                if self.reports.state() == "stop_requested":
                    self.stop_seen = True
            except StopRequested:
                self.stop_seen = True
            except Superseded:
                self.superseded = True
                return
            except Exception as exc:  # the API is away: keep trying, the engine keeps working
                log.warning("could not report progress of %s: %s", self.reports.url, exc)

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> str:
        """Run the backup and report its end; the state it ended in (or ``superseded``)."""
        beat = threading.Thread(target=self._beat, name="backup-report", daemon=True)
        beat.start()
        try:
            result = run_backup(
                self.vault,
                list(self.item.get("inclusions") or []),
                list(self.item.get("exclusions") or []),
                on_progress=self.report,
                should_stop=self.should_stop,
                on_phase=lambda phase: self.enter(str(phase)),
                max_bps=self.max_bps,
            )
            self._stop_beat(beat)
            return self._finish_with(result)
        except (BackupStopped, StopRequested):
            self._stop_beat(beat)
            return self._end("stopped", self.counters())
        except Superseded:
            self._stop_beat(beat)
            log.warning("%s was given to another attempt: this one stops", self.reports.url)
            return "superseded"
        except Exception as exc:
            self._stop_beat(beat)
            reference = uuid.uuid4().hex[:12]
            log.exception("backup %s failed (reference %s)", self.item.get("id"), reference)
            errors = {
                "count": 0,
                "reason": "backup_failed",
                "diagnostics": (
                    f"The backup failed on the agent's host ({type(exc).__name__}). Start it "
                    f"again; if it fails again, the agent's log has reference {reference}."
                ),
                "list": [],
            }
            return self._end("failed", [*self.counters(), replace("/errors", errors)])

    def _stop_beat(self, beat: threading.Thread) -> None:
        self._done.set()
        beat.join(timeout=10)

    def _finish_with(self, result: BackupResult) -> str:
        operations = [
            replace("/files_searched", result.files_searched),
            replace("/bytes_searched", result.bytes_searched),
            replace("/files_backed_up", result.files_backed_up),
            replace("/bytes_backed_up", result.bytes_backed_up),
            replace("/bytes_in_db", result.bytes_in_db),
            replace("/bandwidth_avg_bps", self.bandwidth(result.bytes_backed_up)),
            replace("/snapshot_id", result.snapshot_id),
        ]
        if not result.errors:
            return self._end("completed", operations)
        items = [
            {
                "index": index,
                "path": error.path,
                "type": error.type,
                "exception": {
                    "code": error.code or 0,
                    "description": error.description or "",
                    "details": error.details or "",
                },
            }
            for index, error in enumerate(result.errors)
        ]
        errors = {
            "count": len(items),
            "reason": ERROR_REASON,
            "diagnostics": ERROR_DIAGNOSTICS,
            "list": items,
        }
        return self._end("completed_with_errors", [*operations, replace("/errors", errors)])

    def _end(self, state: str, operations: list[dict[str, Any]]) -> str:
        try:
            try:
                self.reports.patch([*operations, replace("/state", state)])
            except StopRequested:
                # Asked to stop on the way to a state a stop request cannot reach.
                state = "stopped"
                self.reports.patch([*operations, replace("/state", state)])
        except Superseded:
            return "superseded"
        except ApiRefused as exc:
            log.error("the server refused the result of %s: %s", self.reports.url, exc)
            raise
        log.info("%s ended %s", self.reports.url, state)
        return state
