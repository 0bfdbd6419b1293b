"""Queue administration: what `cloudbackup queues` and /v2/admin/queues show and change, and
the workers' heartbeat rows."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from celery import Celery

from cloudbackup.domain import scheduler
from cloudbackup.domain.errors import InvalidInput, NotFound
from cloudbackup.domain.run_states import BACKUP_MACHINE
from cloudbackup.queue.celery_app import make_celery
from cloudbackup.queue.names import MAX_QUEUE_CONCURRENCY, PUBLISHED_HEADER, QueueNames
from cloudbackup.queue.publishing import CeleryDispatcher, database_pins
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database, rowcount
from cloudbackup.store.tables import (
    BACKUPS,
    QUEUE_SETTINGS,
    RUN_SLOTS,
    WORKER_HEARTBEATS,
    as_utc,
    utcnow,
)

log = logging.getLogger("cloudbackup.queue")

# -- administration: what `cloudbackup queues` and /v2/admin/queues show and change -----------


@dataclass(slots=True)
class QueueInfo:
    name: str
    kind: str  # manual | scheduled | maintenance | agent | other
    agent_id: str | None
    depth: int | None  # messages in the broker (None: the broker could not be asked)
    oldest_age_seconds: float | None  # age of the oldest message waiting in the broker
    paused: bool
    concurrency: int | None
    running: int  # backups admitted from this queue and not final
    waiting: int  # backups held back by a pause or a limit
    oldest_waiting_seconds: float | None
    consumers: list[str] = field(default_factory=list)  # online workers consuming it


@dataclass(slots=True)
class WorkerInfo:
    hostname: str
    agent_id: str | None
    queues: list[str]
    concurrency: int
    running: list[dict[str, Any]]
    pid: int
    started_at: datetime
    last_seen: datetime | None
    online: bool


@dataclass(slots=True)
class BrokerQueue:
    depth: int | None
    oldest_published: float | None


class QueueAdmin:
    """Queue depths and ages (broker), settings, slots and workers (database), and changes."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        app: Celery | None = None,
        dispatcher: CeleryDispatcher | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.names = QueueNames(settings.backup_queue)
        self._app = app
        self._dispatcher = dispatcher

    @property
    def app(self) -> Celery:
        if self._app is None:
            self._app = make_celery(self.settings)
        return self._app

    @property
    def dispatcher(self) -> CeleryDispatcher:
        if self._dispatcher is None:
            self._dispatcher = CeleryDispatcher(
                self.app, self.settings.backup_queue, pins=database_pins(self.settings, self.db)
            )
        return self._dispatcher

    # -- reading --------------------------------------------------------------------------
    def workers(self, now: datetime | None = None) -> list[WorkerInfo]:
        now = now or utcnow()
        offline_after = timedelta(seconds=self.settings.worker_offline_seconds)
        with self.db.transaction() as session:
            rows = session.execute(
                sa.select(WORKER_HEARTBEATS).order_by(WORKER_HEARTBEATS.c.hostname)
            ).all()
        result = []
        for row in rows:
            queues = [q for q in (row.queues or []) if self.names.ours(q)]
            if not queues:
                continue  # a worker of another deployment sharing the database
            last = as_utc(row.last_seen) if row.last_seen else None
            result.append(
                WorkerInfo(
                    hostname=row.hostname,
                    agent_id=row.agent_id,
                    queues=queues,
                    concurrency=row.concurrency,
                    running=list(row.running or []),
                    pid=row.pid,
                    started_at=as_utc(row.started_at),
                    last_seen=last,
                    online=last is not None and now - last <= offline_after,
                )
            )
        return result

    def queue_names(self, workers: Iterable[WorkerInfo] = ()) -> list[str]:
        """Shared queues, queues of pinned agents, queues with settings or consumers."""
        names = list(self.names.shared())
        extra: set[str] = set()
        extra.update(
            q for agent in scheduler.pinned_agents(self.db) for q in self.names.for_agent(agent)
        )
        with self.db.transaction() as session:
            extra.update(session.execute(sa.select(QUEUE_SETTINGS.c.queue)).scalars())
            extra.update(session.execute(sa.select(RUN_SLOTS.c.queue).distinct()).scalars())
        for worker in workers:
            extra.update(worker.queues)
        names += sorted(q for q in extra if q not in names and self.names.ours(q))
        return names

    def queues(self, now: datetime | None = None) -> list[QueueInfo]:
        now = now or utcnow()
        workers = self.workers(now)
        names = self.queue_names(workers)
        broker = self.broker_stats(names)
        with self.db.transaction() as session:
            settings = {
                row.queue: (row.paused, row.concurrency)
                for row in session.execute(sa.select(QUEUE_SETTINGS))
            }
            slots = session.execute(
                sa.select(
                    RUN_SLOTS.c.queue,
                    RUN_SLOTS.c.state,
                    sa.func.count(),
                    sa.func.min(RUN_SLOTS.c.since),
                )
                .join(BACKUPS, BACKUPS.c.id == RUN_SLOTS.c.backup_id)
                .where(BACKUPS.c.state.not_in([s.value for s in BACKUP_MACHINE.final]))
                .group_by(RUN_SLOTS.c.queue, RUN_SLOTS.c.state)
            ).all()
        counts: dict[tuple[str, str], tuple[int, datetime | None]] = {
            (q, s): (n, since) for q, s, n, since in slots
        }
        result = []
        for name in names:
            paused, concurrency = settings.get(name, (False, None))
            stats = broker.get(name, BrokerQueue(None, None))
            waiting, waiting_since = counts.get((name, "waiting"), (0, None))
            result.append(
                QueueInfo(
                    name=name,
                    kind=self.names.kind_of(name),
                    agent_id=self.names.agent_of(name),
                    depth=stats.depth,
                    oldest_age_seconds=None
                    if stats.oldest_published is None
                    else max(0.0, now.timestamp() - stats.oldest_published),
                    paused=paused,
                    concurrency=concurrency,
                    running=counts.get((name, "running"), (0, None))[0],
                    waiting=waiting,
                    oldest_waiting_seconds=None
                    if waiting_since is None
                    else max(0.0, (now - as_utc(waiting_since)).total_seconds()),
                    consumers=[w.hostname for w in workers if w.online and name in w.queues],
                )
            )
        return result

    def queue(self, name: str) -> QueueInfo:
        for info in self.queues():
            if info.name == name:
                return info
        raise NotFound(f"Queue {name!r} not found.")

    def broker_stats(self, names: Iterable[str]) -> dict[str, BrokerQueue]:
        """Depth and oldest message of each queue; empty when the broker cannot be reached."""
        wanted = list(names)
        try:
            with self.app.connection_for_read() as conn:
                conn.ensure_connection(max_retries=1, timeout=self.settings.broker_publish_timeout)
                channel: Any = conn.default_channel
                client = getattr(channel, "client", None)
                if client is not None and hasattr(client, "llen"):  # Redis: read the lists
                    return {name: _redis_queue(client, name) for name in wanted}
                return {name: _amqp_queue(channel, name) for name in wanted}
        except Exception as exc:
            log.warning("could not read queue depths from the broker: %s", exc)
            return {}

    # -- changing -------------------------------------------------------------------------
    def update(
        self,
        name: str,
        *,
        paused: bool | None = None,
        concurrency: int | None = None,
        clear_concurrency: bool = False,
    ) -> QueueInfo:
        """Pause/resume a queue or change its concurrency; persisted, applied at once."""
        if concurrency is not None and not 1 <= concurrency <= MAX_QUEUE_CONCURRENCY:
            raise InvalidInput(
                "Validation failed.",
                [f"concurrency must be an integer from 1 to {MAX_QUEUE_CONCURRENCY}, or null."],
            )
        if name not in self.queue_names(self.workers()):
            raise NotFound(f"Queue {name!r} not found.")
        values: dict[str, Any] = {"updated_at": utcnow()}
        if paused is not None:
            values["paused"] = paused
        if concurrency is not None or clear_concurrency:
            values["concurrency"] = concurrency
        with self.db.transaction() as session:
            changed = session.execute(
                sa.update(QUEUE_SETTINGS).where(QUEUE_SETTINGS.c.queue == name).values(**values)
            )
            if not rowcount(changed):
                session.execute(sa.insert(QUEUE_SETTINGS).values(queue=name, **values))
        if paused is False or concurrency is not None or clear_concurrency:
            # Runs held back by the pause or the old limit get their chance now.
            for waiting in scheduler.waiting_in(self.db, name):
                self.dispatcher.publish_to(
                    waiting.queue, "backup", waiting.backup_id, waiting.agent_id
                )
        log.info(
            "queue %s changed: %s", name, {k: v for k, v in values.items() if k != "updated_at"}
        )
        return self.queue(name)

    def paused_queues(self) -> set[str]:
        with self.db.transaction() as session:
            return set(
                session.execute(
                    sa.select(QUEUE_SETTINGS.c.queue).where(QUEUE_SETTINGS.c.paused.is_(True))
                ).scalars()
            )


def _redis_queue(client: Any, name: str) -> BrokerQueue:
    depth = int(client.llen(name))
    oldest = client.lindex(name, -1) if depth else None  # LPUSH in, BRPOP out: oldest last
    published: float | None = None
    if oldest is not None:
        try:
            headers = json.loads(oldest).get("headers") or {}
            value = headers.get(PUBLISHED_HEADER)
            published = float(value) if value is not None else None
        except (ValueError, TypeError, AttributeError):
            published = None
    return BrokerQueue(depth, published)


def _amqp_queue(channel: Any, name: str) -> BrokerQueue:
    try:
        _, depth, _ = channel.queue_declare(queue=name, passive=True)
    except Exception:  # not declared yet: nothing was ever published to it
        return BrokerQueue(0, None)
    return BrokerQueue(int(depth), None)


def record_heartbeat(
    db: Database,
    *,
    hostname: str,
    queues: list[str],
    concurrency: int,
    running: list[dict[str, Any]],
    pid: int,
    agent_id: str | None,
    started_at: datetime,
) -> None:
    """Upsert one worker's report (its queues and what it runs now)."""
    now = utcnow()
    values = {
        "queues": queues,
        "concurrency": concurrency,
        "running": running,
        "pid": pid,
        "agent_id": agent_id,
        "last_seen": now,
    }
    with db.transaction() as session:
        changed = session.execute(
            sa.update(WORKER_HEARTBEATS)
            .where(WORKER_HEARTBEATS.c.hostname == hostname)
            .values(**values)
        )
        if not rowcount(changed):
            session.execute(
                sa.insert(WORKER_HEARTBEATS).values(
                    hostname=hostname, started_at=started_at, **values
                )
            )


def forget_worker(db: Database, hostname: str) -> None:
    """A worker that shuts down cleanly leaves the list at once."""
    with db.transaction() as session:
        session.execute(
            sa.delete(WORKER_HEARTBEATS).where(WORKER_HEARTBEATS.c.hostname == hostname)
        )
