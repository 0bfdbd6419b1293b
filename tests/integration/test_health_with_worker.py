"""H1/H2 and A6 against the real PostgreSQL, Redis and a real Celery worker: health follows the
worker as it starts and stops. A database of its own, so no other test's worker reports here."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from cloudbackup.queue.publishing import CeleryDispatcher
from cloudbackup.server import create_app
from cloudbackup.settings import load_settings
from cloudbackup.store import migrate
from cloudbackup.store.db import Database
from factories import rows
from factories.api import PROJECT, headers, token
from factories.services import WorkerProcess, fresh_postgres_database

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture
def private_env(integration_env: dict[str, str]) -> Iterator[dict[str, str]]:
    with fresh_postgres_database() as url:
        migrate.upgrade(url)
        yield {
            **integration_env,
            "CLOUDBACKUP_DATABASE_URL": url,
            "CLOUDBACKUP_BACKUP_QUEUE": f"backups-health-{uuid.uuid4().hex[:8]}",
            "CLOUDBACKUP_WORKER_SYNC_SECONDS": "0.5",
        }


def until(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def test_health_and_agent_status_follow_a_real_worker(private_env, tmp_path):
    settings = load_settings(private_env)
    db = Database(settings.resolved_database_url)
    app = create_app(settings, database=db, dispatcher=CeleryDispatcher.from_settings(settings))
    agent = rows.agent(db)
    secret = token(db)
    status_url = f"/v2/{PROJECT}/agents/{agent.id}/status"
    try:
        with TestClient(app=app) as api:
            before = api.get(f"/v2/{PROJECT}/health")
            assert before.status_code == 503
            body = before.json()
            assert body["storage"]["database"]["online"] is True  # PostgreSQL
            assert body["queue"]["redis"]["online"] is True  # the real Redis
            assert body["workers"]["celery"]["online"] is False
            assert api.get(status_url, headers=headers(secret)).json()["online"] is False

            worker = WorkerProcess(private_env, tmp_path / "worker.log", concurrency=1).start()
            try:
                up = until(lambda: api.get(f"/v2/{PROJECT}/health").status_code == 200)
                assert up, api.get(f"/v2/{PROJECT}/health").json()
                one = api.get(f"/v2/{PROJECT}/health/workers/celery")
                assert one.status_code == 200 and one.json()["online"] is True
                # OQ-41: our workers act as the agent, so a silent agent is online now.
                assert api.get(status_url, headers=headers(secret)).json() == {
                    "busy": False,
                    "online": True,
                }
            finally:
                worker.stop()
            # A worker that stops cleanly leaves at once: health turns 503 again.
            down = until(lambda: api.get(f"/v2/{PROJECT}/health").status_code == 503)
            assert down
    finally:
        db.dispose()
