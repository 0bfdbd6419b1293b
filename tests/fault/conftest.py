"""Fault-test fixtures: a private PostgreSQL and a private Redis per test (the machine's shared
servers are never stopped), real `celery worker`/`celery beat` processes, and helpers that
watch backups through the database the way an operator would.

Timings are shortened so faults are noticed in seconds: heartbeats go stale after 3 s, the
sweeper runs every 5 s (beat's floor) and re-publishes after 3 s.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from cloudbackup.domain.errors import Unavailable
from cloudbackup.queue.publishing import CeleryDispatcher
from cloudbackup.server import create_app
from cloudbackup.settings import Settings, load_settings
from cloudbackup.store import migrate
from cloudbackup.store.db import Database
from cloudbackup.store.tables import Backup, Event, Restore
from factories import rows
from factories.private_services import (
    BeatProcess,
    PrivatePostgres,
    PrivateRedis,
    private_postgres,
    private_redis,
)
from factories.services import WorkerProcess

FINAL = {"completed", "completed_with_errors", "failed", "stopped", "skipped", "missed"}


@dataclass
class Stack:
    """Everything one fault test runs against, all of it private to the test."""

    pg: PrivatePostgres
    redis: PrivateRedis
    env: dict[str, str]
    settings: Settings
    db: Database
    tmp: Path
    processes: list[Any] = field(default_factory=list)

    def worker(self, name: str, concurrency: int = 1, **env: str) -> WorkerProcess:
        log = self.tmp / f"{name}.log"
        process = WorkerProcess({**self.env, **env}, log, concurrency=concurrency, name=name)
        self.processes.append(process)
        return process.start()

    def beat(self) -> BeatProcess:
        process = BeatProcess(self.env, self.tmp / "beat.log")
        self.processes.append(process)
        return process.start()

    def api(self) -> TestClient:  # type: ignore[type-arg]
        app = create_app(
            self.settings,
            database=self.db,
            dispatcher=CeleryDispatcher.from_settings(self.settings),
        )
        return TestClient(app=app)

    def configuration(self, root: Path, **agent_overrides: Any) -> Any:
        agent = rows.agent(self.db, **agent_overrides)
        return rows.configuration(
            self.db,
            agent,
            inclusions=[{"type": "folder", "path": f"{root}/"}],
            exclusions=[{"type": "folder", "path": f"{root}/cache/"}],
        )

    def backup(self, backup_id: str) -> Backup:
        return self.row(Backup, backup_id)

    def restore(self, restore_id: str) -> Restore:
        return self.row(Restore, restore_id)

    def row(self, table: Any, run_id: str) -> Any:
        """The run's row of ``table`` (a backup, a restore) as it is now."""
        with self.db.transaction() as session:
            return session.execute(sa.select(table).where(table.id == run_id)).scalar_one()

    def events(self, backup_id: str) -> list[str]:
        with self.db.transaction() as session:
            return list(
                session.execute(
                    sa.select(Event.event)
                    .where(Event.backup_id == backup_id, Event.event != "backup_progress")
                    .order_by(Event.id)
                ).scalars()
            )

    def wait(
        self,
        backup_id: str,
        predicate: Callable[[Any], bool] = lambda b: b.state in FINAL,
        timeout: float = 90.0,
        what: str = "a final state",
        table: Any = Backup,
    ) -> Any:
        """The row of run ``backup_id`` (of ``table``: a backup unless told) once ``predicate``
        holds for it."""
        deadline = time.monotonic() + timeout
        row = None
        while time.monotonic() < deadline:
            try:
                row = self.row(table, backup_id)
            except Unavailable:  # our own pooled connections die with a restarted server
                time.sleep(0.2)
                continue
            if predicate(row):
                return row
            time.sleep(0.1)
        assert row is not None
        raise AssertionError(
            f"{table.__name__.lower()} {backup_id} did not reach {what} in {timeout} s; it is "
            f"{row.state} "
            f"(attempts {row.attempts}, heartbeat {row.heartbeat_at}); logs:\n{self.logs()}"
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.log_path.name}\n{p.log_path.read_text(errors='replace')[-4000:]}"
            for p in self.processes
            if p.log_path.exists()
        )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with private_postgres() as pg, private_redis() as redis:
        url = pg.create_database()
        migrate.upgrade(url)
        env = {
            "CLOUDBACKUP_DATA_DIR": str(tmp_path / "data"),
            "CLOUDBACKUP_DATABASE_URL": url,
            "CLOUDBACKUP_BROKER_URL": redis.url,
            "CLOUDBACKUP_VAULT_PATH": str(tmp_path / "vault"),
            "CLOUDBACKUP_ALLOWED_ROOTS": "/",  # anything but the service's own files
            "CLOUDBACKUP_BACKUP_QUEUE": f"fault-{uuid.uuid4().hex[:8]}",
            "CLOUDBACKUP_PROGRESS_INTERVAL": "0.2",
            "CLOUDBACKUP_HEARTBEAT_TIMEOUT_SECONDS": "3",
            "CLOUDBACKUP_SWEEP_AFTER_SECONDS": "3",
            "CLOUDBACKUP_TOKEN_CACHE_SECONDS": "0",
            "CLOUDBACKUP_MAX_RUNNING_PER_AGENT": "0",
            "CLOUDBACKUP_DATABASE_CONNECT_TIMEOUT": "2",
            "CLOUDBACKUP_BROKER_PUBLISH_TIMEOUT": "1",
            "CLOUDBACKUP_LOG_FORMAT": "console",
        }
        (tmp_path / "data").mkdir()
        settings = load_settings(env)
        db = Database(url, connect_timeout=2)
        stack = Stack(pg, redis, env, settings, db, tmp_path)
        try:
            yield stack
        finally:
            for process in reversed(stack.processes):
                process.stop()
            db.dispose()
