"""The Celery application of the workers (`celery -A cloudbackup.workers.app worker`) and of beat.

Two additions to plain Celery: every worker reports a heartbeat (its queues and running tasks)
to the database, follows the queue pauses stored there and, as an agent's host worker, pins its
agent once it consumes (:class:`WorkerReport`), and beat runs
the schedule tick itself (:class:`Beat`), so scheduled backups fire on time even while every
worker slot is busy with long backups.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from celery import bootsteps
from celery.beat import PersistentScheduler, ScheduleEntry
from celery.signals import setup_logging, task_postrun
from celery.worker import state as worker_state

from cloudbackup.domain.logfiles import agent_log_folder
from cloudbackup.logs import configure_logging
from cloudbackup.queue.celery_app import make_celery
from cloudbackup.queue.names import SCHEDULE_TICK_TASK, SWEEP_WEBHOOKS_TASK, QueueNames
from cloudbackup.settings import get_settings
from cloudbackup.store.agent_pins import pin_agent
from cloudbackup.store.db import Database
from cloudbackup.store.queue_settings import paused_queues
from cloudbackup.store.tables import utcnow
from cloudbackup.store.worker_heartbeats import forget_worker, record_heartbeat
from cloudbackup.workers.memory import release_freed_memory

log = logging.getLogger("cloudbackup.worker")

settings = get_settings()
configure_logging(settings.log_level, agent_log_dir=agent_log_folder(settings))
app = make_celery(settings)
app.conf.include = [
    "cloudbackup.workers.tasks",
    "cloudbackup.workers.mail_tasks",
    "cloudbackup.workers.retention_tasks",
    "cloudbackup.workers.webhook_tasks",
]
app.conf.beat_scheduler = "cloudbackup.workers.app:Beat"


@setup_logging.connect  # type: ignore[untyped-decorator]
def _our_logging(**_: Any) -> None:
    """Celery leaves logging alone when this signal has a receiver: keep our JSON lines."""
    configure_logging(settings.log_level, agent_log_dir=agent_log_folder(settings))


@task_postrun.connect  # type: ignore[untyped-decorator]
def _release_memory(**_: Any) -> None:
    """What a task freed goes back to the system: the next task's peak does not start from
    this one's (``workers/memory.py``)."""
    release_freed_memory()


class Beat(PersistentScheduler):  # type: ignore[misc]
    """Beat that runs the schedule tick and the webhook sweep in its own process instead of
    publishing them.

    Firing a schedule is a few database writes; doing it here means it never waits behind long
    backups for a worker slot. Two beats may run: the tick's compare-and-set fires each
    occurrence once, and a delivery published twice is sent once (its lease).
    """

    def setup_schedule(self) -> None:
        # The schedule file lives in the data folder, which nothing else creates on PostgreSQL:
        # without this, beat dies at start in an empty folder and no sweeper ever runs.
        Path(self.schedule_filename).parent.mkdir(parents=True, exist_ok=True)
        super().setup_schedule()

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        if entry.task == SWEEP_WEBHOOKS_TASK:
            from cloudbackup.workers.webhook_tasks import sweep_webhooks

            try:
                sweep_webhooks()
            except Exception:  # the next pass retries
                log.exception("webhook sweep failed")
            return
        if entry.task != SCHEDULE_TICK_TASK:
            super().apply_entry(entry, producer=producer)
            return
        from cloudbackup.workers.tasks import schedule_tick

        try:
            schedule_tick()
        except Exception:  # one failed tick must not stop beat; the next one retries
            log.exception("schedule tick failed")


class WorkerReport(bootsteps.StartStopStep):  # type: ignore[misc]
    """Every ``worker_sync_seconds``: apply queue pauses and record a heartbeat. A worker on one
    agent's queues (`cloudbackup agent`) pins that agent when it starts consuming, so a worker
    that never starts leaves no agent pinned to a queue nobody reads."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.db: Database | None = None
        self.queues: list[str] = []
        self.started_at = utcnow()
        self.timer: Any = None
        self.fork_hook = False
        self.agent_to_pin: str | None = None
        self.pin_decided = False

    def _forget_connections(self) -> None:
        if self.db is not None:
            self.db.engine.dispose(close=False)

    def start(self, consumer: Any) -> None:
        # Every queue this worker was started for, including those paused right now.
        self.queues = sorted(q.name for q in consumer.task_consumer.queues)
        if not self.pin_decided:  # the first start only: a consumer restarts on reconnects
            self.agent_to_pin = _served_agent(self.queues)
            self.pin_decided = True
        self.db = Database(
            settings.resolved_database_url, connect_timeout=settings.database_connect_timeout
        )
        if not self.fork_hook:
            # Pool processes forked later must not reuse this process's connections.
            os.register_at_fork(after_in_child=self._forget_connections)
            self.fork_hook = True
        self.report(consumer)
        self.timer = consumer.timer.call_repeatedly(
            settings.worker_sync_seconds, self.report, (consumer,), priority=10
        )

    def stop(self, consumer: Any) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.db is not None:
            try:
                forget_worker(self.db, consumer.hostname)
            except Exception as exc:
                log.warning("could not remove the heartbeat of %s: %s", consumer.hostname, exc)

    def report(self, consumer: Any) -> None:
        assert self.db is not None
        try:
            if self.agent_to_pin is not None:
                if pin_agent(self.db, self.agent_to_pin):
                    log.info("agent %s pinned: its work comes to this worker", self.agent_to_pin)
                self.agent_to_pin = None  # once: a `--release` while it runs stays released
            self.follow_pauses(consumer, paused_queues(self.db))
            record_heartbeat(
                self.db,
                hostname=consumer.hostname,
                queues=self.queues,
                concurrency=int(getattr(consumer.pool, "num_processes", 0) or 0),
                running=[_describe(request) for request in list(worker_state.active_requests)],
                pid=os.getpid(),
                agent_id=_served_agent(self.queues),
                started_at=self.started_at,
            )
        except Exception as exc:  # the database may be back at the next beat
            log.warning("worker heartbeat failed: %s", exc)

    def follow_pauses(self, consumer: Any, paused: set[str]) -> None:
        tasks = consumer.task_consumer
        for queue in self.queues:
            consuming = tasks.consuming_from(queue)
            if queue in paused and consuming:
                consumer.cancel_task_queue(queue)
            elif queue not in paused and not consuming:
                consumer.add_task_queue(queue)


def _served_agent(queues: list[str]) -> str | None:
    """The agent whose own queues this worker consumes, if exactly one."""
    names = QueueNames(settings.backup_queue)
    agents = {names.agent_of(q) for q in queues} - {None}
    return next(iter(agents)) if len(agents) == 1 else None


def _describe(request: Any) -> dict[str, Any]:
    started = getattr(request, "time_start", None)
    return {
        "task": request.name,
        "id": request.id,
        "args": list(request.args or [])[:3],
        "running_seconds": round(time.time() - started, 1) if started else None,
    }


app.steps["consumer"].add(WorkerReport)
