"""Celery tasks: thin glue that calls into ``cloudbackup.domain``."""

from __future__ import annotations

import os

from celery import Task
from celery.signals import worker_process_init

from cloudbackup.domain.backup_run import execute_backup
from cloudbackup.domain.sweeper import sweep
from cloudbackup.queueing import RUN_BACKUP_TASK, SWEEP_TASK, CeleryDispatcher
from cloudbackup.store.db import Database
from workers.app import app, settings

_database: tuple[int, Database] | None = None


def database() -> Database:
    """One engine per worker process, created after the fork (pooled connections never cross it)."""
    global _database
    if _database is None or _database[0] != os.getpid():
        _database = (
            os.getpid(),
            Database(
                settings.resolved_database_url, connect_timeout=settings.database_connect_timeout
            ),
        )
    return _database[1]


@worker_process_init.connect
def _reset_database(**_: object) -> None:
    global _database
    _database = None


@app.task(name=RUN_BACKUP_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_backup(self: Task, backup_id: str) -> str:
    outcome = execute_backup(database(), settings, backup_id)
    if outcome == "busy":
        # Another worker's run looks alive; look again once its heartbeat could have gone stale.
        raise self.retry(
            countdown=settings.heartbeat_timeout_seconds + 1, max_retries=settings.max_attempts
        )
    return outcome


@app.task(name=SWEEP_TASK, acks_late=True)
def sweep_backups() -> dict[str, int]:
    report = sweep(database(), CeleryDispatcher(app, settings.backup_queue), settings)
    return {"republished": report.republished, "redriven": report.redriven}
