"""What every run handed to this agent shares: the phases entered in order, a reporting thread
that sends the counters every second and reads the state back (so a stop request reaches the
engine within about a second), and the final report. Backups and restores add the engine call
and their counters."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from cloudbackup.agent.reports import RunReports, StopRequested, Superseded, now_iso, replace
from cloudbackup.agent.session import ApiRefused
from cloudbackup.engine import Stopped, Vault

log = logging.getLogger("cloudbackup.agent")

PHASES = ["queued", "preparing", "in_progress"]
REPORT_SECONDS = 1.0


def error_items(errors: list[Any]) -> list[dict[str, Any]]:
    """The engine's per-file errors as B4/R4 ``/errors`` list items."""
    return [
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
        for index, error in enumerate(errors)
    ]


class HostRun:
    """One handed-over run (a channel item) on this host; subclasses give :meth:`work` and
    :meth:`counters`."""

    noun = "run"

    def __init__(self, reports: RunReports, item: dict[str, Any]) -> None:
        self.reports = reports
        self.item = item
        self.state = str(item.get("state", "queued"))
        self.stop_seen = False
        self.superseded = False
        self._done = threading.Event()

    # -- what a kind gives ----------------------------------------------------------------------
    def work(self) -> str:
        raise NotImplementedError

    def counters(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    # -- the engine's callbacks ---------------------------------------------------------------
    def enter(self, phase: str) -> None:
        if phase not in PHASES or PHASES.index(phase) <= PHASES.index(self.state):
            return  # a re-driven run may be past it already
        operations = [replace("/state", phase)]
        if self.state == "queued":
            operations.append(replace("/started_time", now_iso()))
        self.reports.patch(operations)
        self.state = phase

    def should_stop(self) -> bool:
        self.check()
        return self.stop_seen

    def check(self) -> None:
        if self.superseded:
            raise Superseded(self.reports.url)

    # -- the reporting thread -----------------------------------------------------------------
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
        """Run it and report its end; the state it ended in (or ``superseded``)."""
        beat = threading.Thread(target=self._beat, name=f"{self.noun}-report", daemon=True)
        beat.start()
        try:
            return self.work()
        except (Stopped, StopRequested):
            self._stop_beat()
            return self.end("stopped", self.counters())
        except Superseded:
            self._stop_beat()
            log.warning("%s was given to another attempt: this one stops", self.reports.url)
            return "superseded"
        except Exception as exc:
            self._stop_beat()
            reference = uuid.uuid4().hex[:12]
            log.exception("%s %s failed (reference %s)", self.noun, self.item.get("id"), reference)
            errors = {
                "count": 0,
                "reason": f"{self.noun}_failed",
                "diagnostics": (
                    f"The {self.noun} failed on the agent's host ({type(exc).__name__}). Start "
                    f"it again; if it fails again, the agent's log has reference {reference}."
                ),
                "list": [],
            }
            return self.end("failed", [*self.counters(), replace("/errors", errors)])
        finally:
            self._stop_beat()
            beat.join(timeout=10)

    def _stop_beat(self) -> None:
        self._done.set()

    def complete(
        self, operations: list[dict[str, Any]], errors: list[Any], reason: str, diagnostics: str
    ) -> str:
        """End ``completed``, or ``completed_with_errors`` with the per-file ``errors``."""
        self._stop_beat()
        if not errors:
            return self.end("completed", operations)
        items = error_items(errors)
        report = {"count": len(items), "reason": reason, "diagnostics": diagnostics, "list": items}
        return self.end("completed_with_errors", [*operations, replace("/errors", report)])

    def end(self, state: str, operations: list[dict[str, Any]]) -> str:
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


class VaultRun(HostRun):
    """A handed-over run on this agent's vault (a backup, restore or cleanup)."""

    def __init__(self, reports: RunReports, vault: Vault, item: dict[str, Any]) -> None:
        super().__init__(reports, item)
        self.vault = vault
