"""The ``Dispatcher`` the services publish through after their commit: routing of work to
queues (pinned agents to their own), the Celery publisher, and the asyncio one for the API."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import anyio.to_thread
from celery import Celery

from cloudbackup.domain.dispatch import Dispatcher, JobKind
from cloudbackup.queue.celery_app import make_celery
from cloudbackup.queue.names import TASK_OF, Lane, QueueNames, task_headers
from cloudbackup.queue.redis_messages import RedisTaskPublisher, is_redis_url
from cloudbackup.settings import Settings
from cloudbackup.store.agent_pins import pinned_agents
from cloudbackup.store.db import Database

log = logging.getLogger("cloudbackup.queue")


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
        return pinned_agents(holder[0])

    return PinnedAgents(load, settings.routing_cache_seconds)


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
        if kind == "webhook":
            return self.names.webhooks
        if agent_id is not None and self.pins is not None and agent_id in self.pins:
            return self.names.agent(agent_id, self.lane)
        return self.names.lane(self.lane)

    def delivery_queue(self, delivered_to: str | None) -> str:
        return delivered_to or self.names.manual

    def own_queue(self, queue: str, agent_id: str | None) -> str | None:
        if (
            agent_id is None
            or self.names.agent_of(queue) is not None
            or self.pins is None
            or agent_id not in self.pins
        ):
            return None
        return self.names.agent(agent_id, self.names.lane_of(queue))

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
    Redis by :mod:`cloudbackup.queue.redis_messages` (a fraction of the CPU of ``send_task``)."""

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
