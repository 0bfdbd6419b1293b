"""The heartbeat of a claimed run, beaten from a thread (see ``domain.run_protocol``)."""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import sqlalchemy as sa

from cloudbackup.domain.errors import Unavailable
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.tables import utcnow

log = logging.getLogger("cloudbackup.run")


class BeatingRun(Protocol):
    """What the heartbeat needs of the run it beats for (``run_protocol.OwnedRun``)."""

    db: Database
    settings: Settings
    kind: Any
    claim: Any

    @property
    def run_id(self) -> str: ...


class RunHeartbeat:
    """Beats a claimed run's heartbeat from a thread of its own, so an engine step that makes
    no callbacks for a while (a long index load, a hung read) does not make a live run look
    dead and be taken over while its executor still writes. Every beat is fenced by the
    attempt; a beat that finds another attempt owning the run marks it lost."""

    def __init__(self, owned: BeatingRun) -> None:
        settings = owned.settings
        self.owned = owned
        self.interval = max(
            0.2, min(settings.progress_interval, settings.heartbeat_timeout_seconds / 3)
        )
        self.lost = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-{owned.run_id[:8]}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop beating; returns once no beat can be written any more."""
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _beat(self) -> None:
        owned = self.owned
        kind, run_id, attempt = owned.kind, owned.run_id, owned.claim.attempt
        beating = kind.machine.running | {kind.machine.stop_requested}
        while not self._stopped.wait(self.interval):
            try:
                with owned.db.transaction() as session:
                    repo = kind.repository(session)
                    values = {"heartbeat_at": utcnow()}
                    if repo.update_where_state(run_id, beating, values, attempt=attempt):
                        continue
                    self.lost = repo.attempts_of(run_id) != attempt
                    return  # taken over, or no longer running: nothing to beat for
            except (Unavailable, sa.exc.OperationalError) as exc:
                log.warning("could not beat the heartbeat of %s %s: %s", kind.name, run_id, exc)
