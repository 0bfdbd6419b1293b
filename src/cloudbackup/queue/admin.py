"""Queue administration: what `cloudbackup queues` and /v2/admin/queues show and change (the
domain's ``QueueAdministration`` port), from the broker and the store's queue tables."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import Celery

from cloudbackup.domain import admission
from cloudbackup.domain.errors import InvalidInput, NotFound
from cloudbackup.domain.queue_admin import QueueChange, QueueInfo, WorkerInfo
from cloudbackup.domain.run_states import BACKUP_MACHINE
from cloudbackup.queue.celery_app import make_celery
from cloudbackup.queue.names import MAX_QUEUE_CONCURRENCY, PUBLISHED_HEADER, QueueNames
from cloudbackup.queue.publishing import CeleryDispatcher, database_pins
from cloudbackup.settings import Settings
from cloudbackup.store import queue_settings, run_slots
from cloudbackup.store.agent_pins import pinned_agents
from cloudbackup.store.db import Database
from cloudbackup.store.tables import as_utc, utcnow
from cloudbackup.store.worker_heartbeats import heartbeats

__all__ = ["BrokerQueue", "QueueAdmin", "QueueInfo", "WorkerInfo"]

log = logging.getLogger("cloudbackup.queue")

# -- administration: what `cloudbackup queues` and /v2/admin/queues show and change -----------


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
        result = []
        for beat in heartbeats(self.db):
            queues = [q for q in beat.queues if self.names.ours(q)]
            if not queues:
                continue  # a worker of another deployment sharing the database
            last = beat.last_seen
            online = last is not None and now - last <= offline_after
            result.append(WorkerInfo.of(beat, queues=queues, online=online))
        return result

    def queue_names(self, workers: Iterable[WorkerInfo] = ()) -> list[str]:
        """Shared queues, queues of pinned agents, queues with settings or consumers."""
        names = list(self.names.shared())
        extra: set[str] = set()
        extra.update(q for agent in pinned_agents(self.db) for q in self.names.for_agent(agent))
        extra.update(queue_settings.queue_settings(self.db))
        extra.update(run_slots.slotted_queues(self.db))
        for worker in workers:
            extra.update(worker.queues)
        names += sorted(q for q in extra if q not in names and self.names.ours(q))
        return names

    def queues(self, now: datetime | None = None) -> list[QueueInfo]:
        now = now or utcnow()
        workers = self.workers(now)
        names = self.queue_names(workers)
        broker = self.broker_stats(names)
        settings = queue_settings.queue_settings(self.db)
        counts = run_slots.slot_counts(self.db, [s.value for s in BACKUP_MACHINE.final])
        none = run_slots.SlotCount(0, None)
        result = []
        for name in names:
            setting = settings.get(name, queue_settings.QueueSetting())
            stats = broker.get(name, BrokerQueue(None, None))
            waiting = counts.get((name, "waiting"), none)
            result.append(
                QueueInfo(
                    name=name,
                    kind=self.names.kind_of(name),
                    agent_id=self.names.agent_of(name),
                    depth=stats.depth,
                    oldest_age_seconds=None
                    if stats.oldest_published is None
                    else max(0.0, now.timestamp() - stats.oldest_published),
                    paused=setting.paused,
                    concurrency=setting.concurrency,
                    running=counts.get((name, "running"), none).count,
                    waiting=waiting.count,
                    oldest_waiting_seconds=None
                    if waiting.oldest_since is None
                    else max(0.0, (now - as_utc(waiting.oldest_since)).total_seconds()),
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
    def update(self, name: str, change: QueueChange) -> QueueInfo:
        """Pause/resume a queue or change its concurrency; persisted, applied at once."""
        paused, concurrency = change.paused, change.concurrency
        if concurrency is not None and not 1 <= concurrency <= MAX_QUEUE_CONCURRENCY:
            raise InvalidInput(
                "Validation failed.",
                [f"concurrency must be an integer from 1 to {MAX_QUEUE_CONCURRENCY}, or null."],
            )
        if name not in self.queue_names(self.workers()):
            raise NotFound(f"Queue {name!r} not found.")
        values: dict[str, Any] = {}
        if paused is not None:
            values["paused"] = paused
        if concurrency is not None or change.clear_concurrency:
            values["concurrency"] = concurrency
        queue_settings.save_queue_setting(self.db, name, values)
        if paused is False or "concurrency" in values:
            # Runs held back by the pause or the old limit get their chance now.
            for waiting in admission.waiting_in(self.db, name):
                self.dispatcher.publish_to(
                    waiting.queue, "backup", waiting.backup_id, waiting.agent_id
                )
        log.info("queue %s changed: %s", name, values)
        return self.queue(name)


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
