"""The Celery side of dispatching: one app configuration shared by the API (publisher) and the
workers (consumers), the routing of work to queues, the ``Dispatcher`` the services publish
through after their commit, the worker-side admission gate, and queue administration.

Queues, all named after ``CLOUDBACKUP_BACKUP_QUEUE`` (``backups``):

* ``backups``: manual runs (``start_requested``), restores, re-publishes by the sweeper;
* ``backups.scheduled``: runs the scheduler fired, so a flood of them never sits in front of a
  manual run;
* ``backups.maintenance``: sweeps, schedule ticks, cleanups, verification;
* ``backups.agent.<agent_id>`` and ``backups.agent.<agent_id>.scheduled``: the work of an agent
  pinned to its own host worker (``cloudbackup agent --agent-id``). Unpinned agents use the
  shared queues, which the plain ``celery -A workers.app worker`` consumes, so one machine needs
  nothing more than web, worker and beat.

Tasks are addressed by name, so nothing here imports the worker's task modules.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import anyio.to_thread
import sqlalchemy as sa
from celery import Celery
from kombu.entity import Queue

from cloudbackup import logs
from cloudbackup.domain import scheduler
from cloudbackup.domain.dispatch import Dispatcher, JobKind
from cloudbackup.domain.errors import InvalidInput, NotFound
from cloudbackup.domain.states import FINAL_STATES
from cloudbackup.redis_tasks import RedisTaskPublisher, is_redis_url
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

RUN_BACKUP_TASK = "cloudbackup.run_backup"
RUN_RESTORE_TASK = "cloudbackup.run_restore"
RUN_CLEANUP_TASK = "cloudbackup.run_cleanup"
RUN_BROWSE_TASK = "cloudbackup.run_browse"
SWEEP_TASK = "cloudbackup.sweep"
SCHEDULE_TICK_TASK = "cloudbackup.schedule_tick"
TASK_OF: dict[JobKind, str] = {
    "backup": RUN_BACKUP_TASK,
    "restore": RUN_RESTORE_TASK,
    "cleanup": RUN_CLEANUP_TASK,
    "browse": RUN_BROWSE_TASK,
}
# Header carried by every message we publish: lets a worker forward a run to its agent's queue
# and lets `cloudbackup queues` tell the age of the oldest waiting message.
AGENT_HEADER = "cb_agent_id"
PUBLISHED_HEADER = "cb_published_at"
MAX_QUEUE_CONCURRENCY = 10_000

Lane = Literal["manual", "scheduled"]


@dataclass(frozen=True, slots=True)
class QueueNames:
    """Every queue name derives from one base, so test runs and deployments never collide."""

    base: str

    @property
    def manual(self) -> str:
        return self.base

    @property
    def scheduled(self) -> str:
        return f"{self.base}.scheduled"

    @property
    def maintenance(self) -> str:
        return f"{self.base}.maintenance"

    @property
    def agent_prefix(self) -> str:
        return f"{self.base}.agent."

    def shared(self) -> list[str]:
        """What a plain worker consumes, in the order Redis serves them (first = first)."""
        return [self.maintenance, self.manual, self.scheduled]

    def lane(self, lane: Lane) -> str:
        return self.scheduled if lane == "scheduled" else self.manual

    def agent(self, agent_id: str, lane: Lane = "manual") -> str:
        queue = f"{self.agent_prefix}{agent_id}"
        return f"{queue}.scheduled" if lane == "scheduled" else queue

    def for_agent(self, agent_id: str) -> list[str]:
        return [self.agent(agent_id), self.agent(agent_id, "scheduled")]

    def agent_of(self, queue: str) -> str | None:
        if not queue.startswith(self.agent_prefix):
            return None
        rest = queue[len(self.agent_prefix) :]
        return rest.removesuffix(".scheduled") or None

    def lane_of(self, queue: str) -> Lane:
        return "scheduled" if queue.endswith(".scheduled") else "manual"

    def kind_of(self, queue: str) -> str:
        if self.agent_of(queue) is not None:
            return "agent"
        return {
            self.manual: "manual",
            self.scheduled: "scheduled",
            self.maintenance: "maintenance",
        }.get(queue, "other")

    def ours(self, queue: str) -> bool:
        return queue in self.shared() or self.agent_of(queue) is not None


def make_celery(settings: Settings, *, name: str = "cloudbackup") -> Celery:
    """A Celery app configured for at-least-once delivery guarded by compare-and-set starts."""
    if not settings.broker_url:
        raise SystemExit(
            "CLOUDBACKUP_BROKER_URL is not set: point it at Redis (redis://host:6379/0), "
            "or run `cloudbackup dev`, which starts an embedded Redis."
        )
    names = QueueNames(settings.backup_queue)
    app = Celery(name, broker=settings.broker_url)
    app.conf.update(
        task_default_queue=names.manual,
        # A worker started without -Q consumes every shared queue (the Procfile's `worker:`).
        task_queues=[Queue(queue) for queue in names.shared()],  # type: ignore[no-untyped-call]
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A worker reserves no more than it runs: queue length stays an honest scaling signal
        # (KEDA) and a scaled-down worker holds no hidden backlog.
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={
            # Redis re-delivers an unacked task after the visibility timeout: keep it above the
            # longest backup so a healthy run is never delivered twice (field notes).
            "visibility_timeout": settings.broker_visibility_timeout
            or settings.max_backup_seconds + 600,
            # A shortened timeout is checked about as often (kombu's default: ~100 s).
            **(
                {"unacked_restore_interval": 1, "unacked_restore_throttle": 1}
                if settings.broker_visibility_timeout
                else {}
            ),
            # Serve the queues in the order given (maintenance, manual, scheduled) rather than
            # round robin: a manual run never waits behind a flood of scheduled ones.
            "queue_order_strategy": "priority",
        },
        task_soft_time_limit=settings.max_backup_seconds,
        task_time_limit=settings.max_backup_seconds + 300,
        broker_connection_timeout=settings.broker_publish_timeout,
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        # SIGQUIT (or SIGTERM with REMAP_SIGTERM=SIGQUIT): running tasks get this long, then are
        # handed back to the broker; a pod's grace period must be longer (deploy/kubernetes).
        worker_soft_shutdown_timeout=settings.worker_soft_shutdown_seconds,
        worker_enable_soft_shutdown_on_idle=True,
        beat_schedule={
            "sweep": {
                "task": SWEEP_TASK,
                "schedule": max(5.0, settings.sweep_after_seconds / 3),
                "options": {"queue": names.maintenance},
            },
            "schedule-tick": {
                "task": SCHEDULE_TICK_TASK,
                "schedule": settings.schedule_tick_seconds,
                "options": {"queue": names.maintenance, "expires": settings.schedule_tick_seconds},
            },
        },
        beat_schedule_filename=f"{settings.data_dir}/celerybeat-schedule",
    )
    return app


class PinnedAgents:
    """Which agents have their own queue, read from the database at most every ``ttl`` s."""

    def __init__(self, load: Callable[[], frozenset[str]], ttl: float) -> None:
        self._load = load
        self._ttl = ttl
        self._agents: frozenset[str] = frozenset()
        self._expires = 0.0
        self._lock = threading.Lock()

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self.current()

    def current(self) -> frozenset[str]:
        if time.monotonic() >= self._expires:
            with self._lock:
                if time.monotonic() >= self._expires:
                    try:
                        self._agents = self._load()
                    except Exception as exc:  # keep routing on the last known pins
                        log.warning("could not read agent pins: %s", exc)
                    self._expires = time.monotonic() + self._ttl
        return self._agents

    def forget(self) -> None:
        self._expires = 0.0

    def stale(self) -> bool:
        """True when the next :meth:`current` reads the database."""
        return time.monotonic() >= self._expires


def database_pins(settings: Settings, database: Database | None = None) -> PinnedAgents:
    """Pins read from the settings' database (its engine is made on first use)."""
    holder: list[Database] = [database] if database is not None else []

    def load() -> frozenset[str]:
        if not holder:
            holder.append(
                Database(
                    settings.resolved_database_url,
                    connect_timeout=settings.database_connect_timeout,
                )
            )
        return scheduler.pinned_agents(holder[0])

    return PinnedAgents(load, settings.routing_cache_seconds)


def task_headers(agent_id: str | None) -> dict[str, Any]:
    """The headers every message we publish carries (see ``AGENT_HEADER``)."""
    headers: dict[str, Any] = {PUBLISHED_HEADER: time.time()}
    if agent_id is not None:
        headers[AGENT_HEADER] = agent_id
    return headers


class CeleryDispatcher:
    """Publishes runs to the broker; a failed publish is logged and left to the sweeper."""

    def __init__(
        self,
        app: Celery,
        queue: str,
        *,
        lane: Lane = "manual",
        pins: PinnedAgents | None = None,
    ) -> None:
        self.app = app
        self.queue = queue
        self.names = QueueNames(queue)
        self.lane = lane
        self.pins = pins

    @classmethod
    def from_settings(
        cls, settings: Settings, *, lane: Lane = "manual", database: Database | None = None
    ) -> CeleryDispatcher:
        return cls(
            make_celery(settings),
            settings.backup_queue,
            lane=lane,
            pins=database_pins(settings, database),
        )

    def scheduled(self) -> CeleryDispatcher:
        """The same dispatcher publishing to the scheduled lane (what the scheduler uses)."""
        twin = CeleryDispatcher(self.app, self.queue, lane="scheduled", pins=self.pins)
        return twin

    def queue_for(self, kind: JobKind, agent_id: str | None) -> str:
        if kind == "cleanup":
            return self.names.maintenance
        if agent_id is not None and self.pins is not None and agent_id in self.pins:
            return self.names.agent(agent_id, self.lane)
        return self.names.lane(self.lane)

    def publish(self, kind: JobKind, resource_id: str, *, agent_id: str | None = None) -> bool:
        return self.publish_to(self.queue_for(kind, agent_id), kind, resource_id, agent_id)

    def publish_many(self, kind: JobKind, items: Iterable[tuple[str, str | None]]) -> int:
        """Publish many runs over one producer (the scheduler's batches); how many went out."""
        sent = 0
        try:
            with self.app.producer_or_acquire() as producer:
                for resource_id, agent_id in items:
                    queue = self.queue_for(kind, agent_id)
                    sent += self.publish_to(queue, kind, resource_id, agent_id, producer=producer)
        except Exception as exc:  # no connection at all: the sweeper re-publishes the rest
            log.warning("could not publish %s runs, the sweeper will retry: %s", kind, exc)
        return sent

    def publish_to(
        self,
        queue: str,
        kind: JobKind,
        resource_id: str,
        agent_id: str | None = None,
        *,
        producer: Any = None,
    ) -> bool:
        try:
            self.app.send_task(
                TASK_OF[kind],
                args=[resource_id],
                queue=queue,
                headers=task_headers(agent_id),
                producer=producer,
            )
        except Exception as exc:  # the broker is down: the row is committed, the sweeper retries
            log.warning(
                "could not publish %s %s, the sweeper will retry: %s", kind, resource_id, exc
            )
            return False
        return True


class AsyncCeleryDispatcher:
    """The API's publisher: the routing of a :class:`CeleryDispatcher`, the message written to
    Redis by :mod:`cloudbackup.redis_tasks` (a fraction of ``send_task``'s CPU, no thread)."""

    def __init__(self, dispatcher: CeleryDispatcher, publisher: RedisTaskPublisher) -> None:
        self.dispatcher = dispatcher
        self.publisher = publisher

    async def publish(
        self, kind: JobKind, resource_id: str, *, agent_id: str | None = None
    ) -> bool:
        pins = self.dispatcher.pins
        if agent_id is not None and pins is not None and pins.stale():
            await anyio.to_thread.run_sync(pins.current)  # a database read: not on the loop
        queue = self.dispatcher.queue_for(kind, agent_id)
        try:
            await self.publisher.send(TASK_OF[kind], [resource_id], queue, task_headers(agent_id))
        except Exception as exc:  # the broker is down: the row is committed, the sweeper retries
            log.warning(
                "could not publish %s %s, the sweeper will retry: %s", kind, resource_id, exc
            )
            return False
        return True

    async def close(self) -> None:
        await self.publisher.close()


class ThreadedDispatcher:
    """Any :class:`Dispatcher` for asyncio callers: its publish runs in a worker thread."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def publish(
        self, kind: JobKind, resource_id: str, *, agent_id: str | None = None
    ) -> bool:
        def publish() -> bool:
            return self.dispatcher.publish(kind, resource_id, agent_id=agent_id)

        return await anyio.to_thread.run_sync(publish)

    async def close(self) -> None:
        return None


def async_dispatcher(
    dispatcher: Dispatcher, *, timeout: float = 2.0
) -> AsyncCeleryDispatcher | ThreadedDispatcher:
    """The asyncio publisher for ``dispatcher``: straight to Redis when it is a Celery dispatcher
    on a Redis broker, otherwise ``dispatcher`` itself in a thread."""
    if isinstance(dispatcher, CeleryDispatcher):
        url = str(dispatcher.app.conf.broker_url or "")
        if is_redis_url(url):
            return AsyncCeleryDispatcher(dispatcher, RedisTaskPublisher(url, timeout=timeout))
    return ThreadedDispatcher(dispatcher)


# -- the worker side: route check and admission around one run ------------------------------


def run_gated(
    db: Database,
    settings: Settings,
    dispatcher: CeleryDispatcher,
    backup_id: str,
    *,
    delivered_to: str | None,
    agent_hint: str | None,
    execute: Callable[[Database, Settings, str], str],
) -> str:
    """Run one delivered backup if its queue, agent and project limits allow it.

    Returns the run's outcome, ``forwarded`` (its agent has its own queue now, so it was moved
    there), or ``waiting`` (held back by a pause or a limit; released runs hand it on).
    """
    names = dispatcher.names
    queue = delivered_to or names.manual
    if (
        agent_hint is not None
        and names.agent_of(queue) is None
        and dispatcher.pins is not None
        and agent_hint in dispatcher.pins
    ):
        target = names.agent(agent_hint, names.lane_of(queue))
        if dispatcher.publish_to(target, "backup", backup_id, agent_hint):
            log.info("backup %s moved to its agent's queue %s", backup_id, target)
            return "forwarded"
    admission = scheduler.admit(db, settings, backup_id, queue)
    logs.bind(project_id=admission.project_id, agent_id=admission.agent_id)
    if not admission.run:
        return "waiting"
    outcome = "failed"
    try:
        outcome = execute(db, settings, backup_id)
    finally:
        if outcome != "busy":
            for waiting in scheduler.release(db, backup_id):
                dispatcher.publish_to(waiting.queue, "backup", waiting.backup_id, waiting.agent_id)
    return outcome


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
                .where(BACKUPS.c.state.not_in([s.value for s in FINAL_STATES]))
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
