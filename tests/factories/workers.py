"""An in-process worker for the fast suites: a ``Dispatcher`` that runs each published backup or
restore in a thread with the same domain code a Celery worker calls (``execute_backup``,
``execute_restore``), so an API test can watch a real run move through its states without a
broker or a worker process."""

from __future__ import annotations

import threading
from collections.abc import Callable

from cloudbackup.domain.backup_run import execute_backup
from cloudbackup.domain.restore_run import execute_restore
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database


class ThreadWorker:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.threads: list[threading.Thread] = []
        self.results: dict[str, str] = {}

    def publish(self, kind: str, resource_id: str, *, agent_id: str | None = None) -> bool:
        run = {"backup": execute_backup, "restore": execute_restore}.get(kind)
        if run is None:
            return False  # cleanups are not served here
        thread = threading.Thread(target=self._run, args=(run, resource_id), daemon=True)
        self.threads.append(thread)
        thread.start()
        return True

    def _run(self, run: Callable[[Database, Settings, str], str], resource_id: str) -> None:
        self.results[resource_id] = run(self.db, self.settings, resource_id)

    def join(self, timeout: float = 30.0) -> None:
        for thread in self.threads:
            thread.join(timeout)
