"""Health of the service's real dependencies: H1/H2 (spec §12, OQ-27, OQ-28, OQ-41).

Dependencies, named ``{category: {system}}`` like the reference's ``storage.cassandra``:

* ``storage.database``: the SQL database answers ``SELECT 1``;
* ``queue.<broker>``: the Celery broker answers (``redis`` for ``redis://``, ``rabbitmq`` for
  ``amqp://``);
* ``workers.celery``: at least one worker reported a heartbeat (``worker_heartbeats``) within
  ``CLOUDBACKUP_WORKER_OFFLINE_SECONDS``;
* ``transport.litestar``: this API process (always up when it can answer), with ``node``;
* ``mail.smtp``: ``configured`` (``CLOUDBACKUP_SMTP_URL`` is set; without it no mail is sent),
  online when the server accepts a connection, and the outbox's ``pending``/``failed`` counts.
  Mail is optional: it never makes the whole report (H1) answer 503.

The broker is asked through a :data:`BrokerPing` port (the queue package's Redis ping, given by
the composition root); without one, the broker's port accepting a connection counts as up. The
broker check is bounded by ``CLOUDBACKUP_HEALTH_TIMEOUT_SECONDS``, the database checks by
``CLOUDBACKUP_DATABASE_CONNECT_TIMEOUT``. The whole report is reused for :data:`CACHE_SECONDS` and
computed by one caller at a time, so a load balancer polling many API threads costs one round of
checks.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.mail_outbox import MailOutbox
from cloudbackup.store.tables import AGENT_QUEUES, WORKER_HEARTBEATS, utcnow

log = logging.getLogger("cloudbackup.health")

CACHE_SECONDS = 2.0
BrokerPing = Callable[[], bool]
"""Ask the broker whether it answers (raising counts as down); bounded by its own timeout."""
BROKER_NAMES = {"redis": "redis", "rediss": "redis", "amqp": "rabbitmq", "amqps": "rabbitmq"}


@dataclass(frozen=True, slots=True)
class Check:
    category: str
    system: str
    online: bool
    extra: dict[str, Any] = field(default_factory=dict)
    required: bool = True  # an optional dependency being down leaves the service healthy


@dataclass(frozen=True, slots=True)
class HealthReport:
    checks: tuple[Check, ...]

    @property
    def online(self) -> bool:
        return all(check.online for check in self.checks if check.required)

    def find(self, name: str) -> Check | None:
        """H2's ``{dependent_system}``: ``category/system`` or just ``system``."""
        name = name.strip("/")
        for check in self.checks:
            if name in (f"{check.category}/{check.system}", check.system):
                return check
        return None


def broker_system(broker_url: str) -> str:
    scheme = urlsplit(broker_url).scheme
    return BROKER_NAMES.get(scheme, scheme or "broker")


class HealthService:
    def __init__(
        self, db: Database, settings: Settings, broker_ping: BrokerPing | None = None
    ) -> None:
        self.db = db
        self.settings = settings
        self.broker_ping = broker_ping
        self.node = socket.gethostname()
        self._lock = threading.Lock()
        self._cached: tuple[float, HealthReport] | None = None

    def report(self) -> HealthReport:
        cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        with self._lock:
            cached = self._cached
            if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
                return cached[1]
            report = HealthReport(
                (
                    Check("storage", "database", _safely("database", self._database)),
                    Check(
                        "queue",
                        broker_system(self.settings.broker_url),
                        _safely("broker", self._broker),
                    ),
                    Check("workers", "celery", _safely("workers", self._workers)),
                    Check("transport", "litestar", True, {"node": self.node}),
                    self._mail(),
                )
            )
            self._cached = (time.monotonic(), report)
            return report

    def workers_online(self, agent_id: str | None = None) -> bool:
        """A worker is alive (for ``agent_id``: one that serves its queue, OQ-41)."""
        return _safely("workers", lambda: self._workers(agent_id))

    # -- the checks -------------------------------------------------------------------------
    def _database(self) -> bool:
        with self.db.transaction() as session:
            return session.execute(sa.text("SELECT 1")).scalar() == 1

    def _broker(self) -> bool:
        url = self.settings.broker_url
        if not url:
            return False
        if self.broker_ping is not None:
            return self.broker_ping()
        # No ping given: the broker's port accepts connections.
        parts = urlsplit(url)
        port = parts.port or (6379 if broker_system(url) == "redis" else 5672)
        address = (parts.hostname or "localhost", port)
        with socket.create_connection(address, self.settings.health_timeout_seconds):
            return True

    def _mail(self) -> Check:
        url = self.settings.smtp_url
        extra: dict[str, Any] = {"configured": bool(url)}
        try:
            with self.db.transaction() as session:
                extra.update(MailOutbox(session).counts())
        except Exception as exc:  # the storage check reports the database
            log.warning("health check mail outbox failed: %s", exc)

        def reachable() -> bool:
            parts = urlsplit(url)
            port = parts.port or (465 if parts.scheme == "smtps" else 25)
            address = (parts.hostname or "localhost", port)
            with socket.create_connection(address, self.settings.health_timeout_seconds):
                return True

        online = bool(url) and _safely("mail", reachable)
        return Check("mail", "smtp", online, extra, required=False)

    def _workers(self, agent_id: str | None = None) -> bool:
        since = utcnow() - timedelta(seconds=self.settings.worker_offline_seconds)
        fresh = WORKER_HEARTBEATS.c.last_seen >= since
        with self.db.transaction() as session:
            if agent_id is not None:
                pinned = session.execute(
                    sa.select(AGENT_QUEUES.c.agent_id).where(AGENT_QUEUES.c.agent_id == agent_id)
                ).first()
                # A pinned agent is served by its host's worker, the others by shared workers.
                serves = (
                    WORKER_HEARTBEATS.c.agent_id == agent_id
                    if pinned
                    else WORKER_HEARTBEATS.c.agent_id.is_(None)
                )
                fresh = sa.and_(fresh, serves)
            found = session.execute(sa.select(WORKER_HEARTBEATS.c.hostname).where(fresh).limit(1))
            return found.first() is not None


def _safely(name: str, check: Callable[[], bool]) -> bool:
    """A check that raises counts as down; the reason goes to the log, never to the caller."""
    try:
        return check()
    except Exception as exc:  # any failure of a dependency means "down"
        log.warning("health check %s failed: %s", name, exc)
        return False
