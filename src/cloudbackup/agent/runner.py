"""``cloudbackup agent run``: announce the agent (EV3 ``startup``), read its working document
(A7) and serve the work items of the event channel A7 names, one at a time, until stopped. A7 is
read again when the channel says the agent's configurations changed, and at least every
:data:`DOCUMENT_SECONDS` in case such an item was lost."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from cloudbackup.agent.backup import HostBackup
from cloudbackup.agent.browse import answer_browse
from cloudbackup.agent.cleanup import HostCleanup
from cloudbackup.agent.http_storage import HttpStorage
from cloudbackup.agent.logs import log_to_file, upload_log
from cloudbackup.agent.reports import RunReports
from cloudbackup.agent.session import AgentSession, ApiRefused
from cloudbackup.agent.source_vault import restore_run
from cloudbackup.agent.state import StateDir
from cloudbackup.agent.vault_requests import VaultRequests
from cloudbackup.engine import Vault
from cloudbackup.engine.crypto import KDF_FLOOR

log = logging.getLogger("cloudbackup.agent")

POLL_WAIT_SECONDS = 25
RETRY_SECONDS = 2.0
RUN_KINDS = ("backup", "restore", "cleanup")
# The channel's item after a configuration of this agent was created, changed or deleted.
DOCUMENT_CHANGED = "configuration_changed"
# A7 is read again at least this often (seconds), whatever the channel says.
DOCUMENT_SECONDS = 10 * 60


@dataclass(eq=False)
class AgentRunner:
    """One agent serving its channel."""

    state: StateDir
    session: AgentSession
    _: KW_ONLY
    wait: int = POLL_WAIT_SECONDS
    max_bps: int = 0
    document_seconds: float = DOCUMENT_SECONDS
    channel: str = field(init=False)  # until A7 names one, the agent's default channel
    document: dict[str, Any] = field(init=False, default_factory=dict)  # A7 as last read
    document_read_at: float = field(init=False, default=float("-inf"))  # time.monotonic() of it
    busy: bool = field(init=False, default=False)  # running an item (a stop waits for it to end)

    def __post_init__(self) -> None:
        self.channel = self.session.agent_path("channel")

    def vault(self) -> Vault:
        """The agent's vault over the API, encrypted with the password kept in the state dir
        (opened afresh for each run, as a hosted worker does)."""
        # Its password is 256 random bits: the floor's scrypt is enough (as for hosted vaults).
        storage = HttpStorage(self.session)
        return Vault(storage, password=self.state.vault_password(), kdf=KDF_FLOOR)

    def start(self) -> None:
        """EV3 ``startup``, then A7 for the channel's address."""
        self.announce("startup")
        self.read_document()
        log.info("agent %s serves %s", self.session.identity.agent_id, self.channel)

    def read_document(self) -> dict[str, Any]:
        """A7, kept as :attr:`document`; the channel's address is the one it names."""
        document: dict[str, Any] = self.session.checked(
            "GET", self.session.agent_path("configuration")
        ).json()
        rse = document["system_preferences"]["events"]["rse"]
        self.channel = f"{str(rse['host']).rstrip('/')}{rse['channel']}"
        self.document, self.document_read_at = document, time.monotonic()
        names = [str(c.get("name")) for c in document.get("configurations") or []]
        log.info("working document read: %d configuration(s) %s", len(names), names)
        return document

    def reread_document(self, why: str) -> str:
        """A7 again; an API that is away now leaves the last document in place until the next
        change or the next periodic read."""
        log.info("reading the working document again (%s)", why)
        try:
            self.read_document()
        except Exception as exc:  # any failure: the periodic read tries again
            log.warning("could not read the working document: %s", exc)
            return "failed"
        return "read"

    def document_due(self) -> bool:
        return time.monotonic() - self.document_read_at >= self.document_seconds

    def serve(self, stop: threading.Event) -> None:
        """Take work from the channel until ``stop`` is set (logging to the state folder too)."""
        to_file = log_to_file(self.state.folder)
        try:
            self._serve(stop)
        finally:
            logging.getLogger("cloudbackup").removeHandler(to_file)
            to_file.close()

    def _serve(self, stop: threading.Event) -> None:
        self.start()
        marker = self.state.marker() or "0"
        ready = False
        try:
            while not stop.is_set():
                if self.document_due():
                    self.reread_document(f"every {self.document_seconds:g} s")
                try:
                    # The first read does not wait: from its answer on, the agent is remote.
                    wait = str(self.wait if ready else 0)
                    answer = self.session.checked(
                        "GET", self.channel, params={"marker": marker, "wait": wait}
                    ).json()
                except Exception as exc:  # the API is away: try again shortly
                    log.warning("could not read the event channel: %s", exc)
                    stop.wait(RETRY_SECONDS)
                    continue
                if not ready:
                    ready = True
                    log.info("agent %s ready", self.session.identity.agent_id)
                for entry in answer["items"]:
                    marker = str(entry["marker"])
                    # Recorded before the work: a crash mid-run is the server's to re-drive,
                    # with a new attempt and a new item.
                    self.state.save_marker(marker)
                    self.busy = True
                    try:
                        self.handle(entry["item"])
                    finally:
                        self.busy = False
                    if stop.is_set():
                        break
                marker = str(answer.get("marker") or marker)
        except KeyboardInterrupt:
            pass  # a stop signal while waiting on the channel
        finally:
            self.shutdown()

    def handle(self, item: dict[str, Any]) -> str:
        """Run one work item; what it came to."""
        kind = item.get("kind")
        if item.get("type") == "browse":
            return answer_browse(self.session, item, self.vault)
        if item.get("type") == "logfile_upload":
            return upload_log(self.session, self.state.folder, item)
        if item.get("type") == "vault":  # V2/V5: the vault's password
            return VaultRequests(self.state, self.session, HttpStorage(self.session)).handle(item)
        if item.get("type") == DOCUMENT_CHANGED:
            return self.reread_document(f"configuration {item.get('change', 'changed')}")
        if item.get("type") != "run" or kind not in RUN_KINDS:
            log.warning("ignoring a channel item this agent does not serve: %s", kind)
            return "ignored"
        reports = RunReports(self.session, f"{kind}s", str(item["id"]), int(item["attempt"]))
        log.info("%s %s (attempt %s) starts", kind, item["id"], item["attempt"])
        if kind == "cleanup":
            return HostCleanup(reports, self.vault(), item).run()
        if kind == "restore":
            return restore_run(reports, self.state, self.session, item, self.vault).run()
        return HostBackup(reports, self.vault(), item, max_bps=self.max_bps).run()

    def announce(self, event: str) -> None:
        """EV3: the agent's lifecycle event (``startup``, ``shutdown``)."""
        self.session.checked(
            "POST",
            self.session.agent_path("events"),
            json={"event": event},
            headers={"X-Agent-Id": self.session.identity.agent_id},
        )

    def shutdown(self) -> None:
        try:
            self.announce("shutdown")
        except (ApiRefused, OSError) as exc:
            log.warning("could not announce the shutdown: %s", exc)
