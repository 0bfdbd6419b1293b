"""Celery tasks: thin glue that calls into ``cloudbackup.domain``."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from types import FrameType

from celery import Task
from celery.exceptions import Reject
from celery.signals import worker_process_init

from cloudbackup import logs
from cloudbackup.domain import scheduler
from cloudbackup.domain.admission import run_gated
from cloudbackup.domain.agent_channel import AgentChannel
from cloudbackup.domain.browse import answer_browse
from cloudbackup.domain.drill_run import execute_drill
from cloudbackup.domain.drill_schedules import fire_due_drills
from cloudbackup.domain.logfiles import upload_hosted_log
from cloudbackup.domain.remote_runs import backup_executor, cleanup_executor, restore_executor
from cloudbackup.domain.run_protocol import Outcome, request_hand_back
from cloudbackup.domain.sweeper import sweep
from cloudbackup.domain.webhook_deliveries import publisher
from cloudbackup.queue.agent_channels import agent_channel
from cloudbackup.queue.names import (
    AGENT_HEADER,
    RUN_BACKUP_TASK,
    RUN_BROWSE_TASK,
    RUN_CLEANUP_TASK,
    RUN_DRILL_TASK,
    RUN_RESTORE_TASK,
    SCHEDULE_TICK_TASK,
    SWEEP_TASK,
    UPLOAD_LOG_TASK,
)
from cloudbackup.queue.publishing import CeleryDispatcher, database_pins
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.workers.app import app, settings

_database: tuple[int, Database] | None = None


def database() -> Database:
    """One engine per worker process, created after the fork (pooled connections never cross it)."""
    global _database
    if _database is None or _database[0] != os.getpid():
        db = Database(
            settings.resolved_database_url, connect_timeout=settings.database_connect_timeout
        )
        # Webhook deliveries of the events a task writes go out after its commit.
        db.after_commit.append(publisher(dispatcher))
        _database = (os.getpid(), db)
    return _database[1]


@worker_process_init.connect
def _reset_database(**_: object) -> None:
    global _database
    _database = None


_hand_back_installed: int | None = None


def _hand_back_on_shutdown() -> None:
    """In this pool process: the termination signal (Celery cancelling tasks at the end of a soft
    shutdown, or a warm shutdown of the whole process group) makes a running backup hand itself
    back instead of dying mid-write; a process with nothing running exits as before.

    Installed when a task first runs: billiard sets its own handlers after worker_process_init.
    A signal the pool ignores (SIGTERM under REMAP_SIGTERM=SIGQUIT) stays ignored, so the soft
    shutdown window is kept.
    """
    global _hand_back_installed
    if _hand_back_installed == os.getpid():
        return
    _hand_back_installed = os.getpid()
    for signum in (signal.SIGTERM, signal.SIGQUIT):
        previous = signal.getsignal(signum)
        if previous in (signal.SIG_IGN, None):
            continue

        def handler(sig: int, frame: FrameType | None, previous: object = previous) -> None:
            if request_hand_back():
                return
            if callable(previous):
                previous(sig, frame)
            else:
                signal.signal(sig, signal.SIG_DFL)
                os.kill(os.getpid(), sig)

        signal.signal(signum, handler)


_dispatcher: tuple[int, CeleryDispatcher] | None = None


def dispatcher() -> CeleryDispatcher:
    """The dispatcher of this process; it routes pinned agents' work to their own queues."""
    global _dispatcher
    if _dispatcher is None or _dispatcher[0] != os.getpid():
        pins = database_pins(settings, database())
        _dispatcher = (os.getpid(), CeleryDispatcher(app, settings.backup_queue, pins=pins))
    return _dispatcher[1]


_channel: tuple[int, AgentChannel | None] | None = None


def channel() -> AgentChannel | None:
    """This process's way to hand work to remote agents (None on a broker other than Redis)."""
    global _channel
    if _channel is None or _channel[0] != os.getpid():
        _channel = (os.getpid(), agent_channel(settings.broker_url))
    return _channel[1]


Execute = Callable[[Database, Settings, str], Outcome]
_executors: tuple[int, Execute, Execute, Execute] | None = None


def executors() -> tuple[Execute, Execute, Execute]:
    """This process's backup, restore and cleanup executors: remote agents' runs go to their
    channel."""
    global _executors
    if _executors is None or _executors[0] != os.getpid():
        to_agents = channel()
        _executors = (
            os.getpid(),
            backup_executor(to_agents),
            restore_executor(to_agents),
            cleanup_executor(to_agents),
        )
    return _executors[1], _executors[2], _executors[3]


def _bind_delivery(**run_id: str) -> None:
    """Start a run's delivery: hand it back on a shutdown signal, and tag the log lines with
    ``run_id`` (``backup_id=...``) alone."""
    _hand_back_on_shutdown()
    logs.clear()
    logs.bind(**run_id)


def _after(task: Task, outcome: Outcome, kind: str, *, backoff: bool = False) -> str:
    """What the broker should do with a delivery, from the run protocol's outcome."""
    if outcome is Outcome.BUSY:
        # Another worker's run looks alive (or is being handed back right now): look again
        # once its heartbeat could have gone stale (backups back off up to that moment).
        countdown = settings.heartbeat_timeout_seconds + 1
        if backoff:
            countdown = min(2**task.request.retries, countdown)
        raise task.retry(
            countdown=countdown, max_retries=settings.max_attempts + (8 if backoff else 0)
        )
    if outcome is Outcome.HANDED_BACK:
        # This worker is shutting down: back to the queue, for another worker to take over now.
        raise Reject(f"worker shutting down; {kind} handed back", requeue=True)
    return str(outcome)


@app.task(name=RUN_BACKUP_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def backup_task(self: Task, backup_id: str) -> str:
    _bind_delivery(backup_id=backup_id)
    # Limits, pauses and pins are checked here; the run itself is the domain's.
    outcome = run_gated(
        database(),
        settings,
        dispatcher(),
        backup_id,
        delivered_to=(self.request.delivery_info or {}).get("routing_key"),
        agent_hint=self.request.get(AGENT_HEADER),
        execute=executors()[0],
    )
    return _after(self, outcome, "backup", backoff=True)


@app.task(name=RUN_RESTORE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def restore_task(self: Task, restore_id: str) -> str:
    _bind_delivery(restore_id=restore_id)
    execute_restore = executors()[1]
    return _after(self, execute_restore(database(), settings, restore_id), "restore")


@app.task(name=RUN_CLEANUP_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def cleanup_task(self: Task, cleanup_id: str) -> str:
    _bind_delivery(cleanup_id=cleanup_id)
    execute_cleanup = executors()[2]
    return _after(self, execute_cleanup(database(), settings, cleanup_id), "cleanup")


@app.task(name=RUN_DRILL_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def drill_task(self: Task, drill_id: str) -> str:
    """A restore drill (issue 14, an API extension)."""
    _bind_delivery(drill_id=drill_id)
    return _after(self, execute_drill(database(), settings, drill_id), "drill")


@app.task(name=RUN_BROWSE_TASK, acks_late=True)
def browse_task(request_id: str) -> str:
    logs.clear()
    return answer_browse(database(), settings, request_id, channel())


@app.task(name=UPLOAD_LOG_TASK, acks_late=True)
def upload_log_task(logfile_id: str) -> str:
    logs.clear()
    return upload_hosted_log(database(), settings, logfile_id, channel())


@app.task(name=SWEEP_TASK, acks_late=True)
def sweep_task() -> dict[str, int]:
    """Re-drive every kind of run nobody is running and purge what expired (``domain.sweeper``)."""
    report = sweep(database(), dispatcher(), settings)
    return {
        "republished": report.backups.republished,
        "redriven": report.backups.redriven,
        "handed_back": report.handed_back,
        "purged": report.events_purged,
        "restores_republished": report.restores.republished,
        "restores_redriven": report.restores.redriven,
        "cleanups_republished": report.cleanups.republished,
        "cleanups_redriven": report.cleanups.redriven,
        "drills_republished": report.drills.republished,
        "drills_redriven": report.drills.redriven,
        "browse_republished": report.browse.republished,
        "browse_purged": report.browse.purged,
        "logfiles_republished": report.logfiles_republished,
    }


@app.task(name=SCHEDULE_TICK_TASK, acks_late=True)
def schedule_tick() -> dict[str, int]:
    """Fire due schedules, backups' and drills' (beat runs this in its own process, see
    cloudbackup.workers.app.Beat)."""
    report = scheduler.tick(database(), dispatcher().scheduled(), settings)
    drills = fire_due_drills(database(), dispatcher().scheduled())
    return {
        "fired": report.fired,
        "missed": report.missed,
        "expired": report.expired,
        "drills_started": drills.started,
    }
