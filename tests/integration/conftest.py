"""Integration fixtures: the real PostgreSQL and Redis of this machine and real Celery workers.

One fresh PostgreSQL database and one Redis queue per test session; the API runs in-process on
that database and publishes to the real Redis; workers are separate `celery worker` processes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from litestar.testing import TestClient

from cloudbackup.queue.publishing import CeleryDispatcher
from cloudbackup.server import create_app
from cloudbackup.settings import Settings, load_settings
from cloudbackup.store import migrate
from cloudbackup.store.db import Database
from factories.services import REDIS_URL, WorkerProcess, fresh_postgres_database, require_services

pytestmark = pytest.mark.services

FINAL = {"completed", "completed_with_errors", "failed", "stopped", "skipped", "missed"}


@pytest.fixture(scope="session")
def services() -> None:
    require_services()


@pytest.fixture(scope="session")
def pg_url(services: None) -> Iterator[str]:
    with fresh_postgres_database() as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture(scope="session")
def integration_env(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    data = tmp_path_factory.mktemp("data")
    queue = f"backups-test-{uuid.uuid4().hex[:8]}"
    return {
        "CLOUDBACKUP_DATA_DIR": str(data),
        "CLOUDBACKUP_DATABASE_URL": pg_url,
        "CLOUDBACKUP_BROKER_URL": REDIS_URL,
        "CLOUDBACKUP_VAULT_PATH": str(data / "vault"),
        "CLOUDBACKUP_ALLOWED_ROOTS": "/",  # anything but the service's own files
        "CLOUDBACKUP_BACKUP_QUEUE": queue,
        "CLOUDBACKUP_PROGRESS_INTERVAL": "0.2",
        # Slow enough that a 24 MiB tree takes ~3 s: progress and stops can be watched.
        "CLOUDBACKUP_BACKUP_MAX_BPS": str(8 * 1024 * 1024),
        "CLOUDBACKUP_TOKEN_CACHE_SECONDS": "0",
        "CLOUDBACKUP_HEARTBEAT_TIMEOUT_SECONDS": "60",
    }


@pytest.fixture(scope="session")
def integration_settings(integration_env: dict[str, str]) -> Settings:
    return load_settings(integration_env)


@pytest.fixture(scope="session")
def pg_db(integration_settings: Settings) -> Iterator[Database]:
    database = Database(integration_settings.resolved_database_url)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def worker(
    integration_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    redis.Redis.from_url(REDIS_URL).delete(integration_env["CLOUDBACKUP_BACKUP_QUEUE"])
    log = tmp_path_factory.mktemp("logs") / "worker.log"
    process = WorkerProcess(integration_env, log).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def dispatcher(integration_settings: Settings) -> CeleryDispatcher:
    return CeleryDispatcher.from_settings(integration_settings)


@pytest.fixture
def api(
    integration_settings: Settings, pg_db: Database, dispatcher: CeleryDispatcher
) -> Iterator[TestClient]:  # type: ignore[type-arg]
    app = create_app(integration_settings, database=pg_db, dispatcher=dispatcher)
    with TestClient(app=app) as client:
        yield client


@pytest.fixture
def wait_for() -> Callable[..., dict[str, Any]]:
    """Poll a backup until ``predicate(body)`` holds; return the body (fail with the last one)."""

    def _wait(
        client: Any,
        url: str,
        headers: dict[str, str],
        predicate: Callable[[dict[str, Any]], bool] = lambda b: b["state"] in FINAL,
        timeout: float = 30.0,
        interval: float = 0.1,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            response = client.get(url, headers=headers)
            assert response.status_code == 200, response.text
            body = response.json()
            if predicate(body):
                return body
            time.sleep(interval)
        raise AssertionError(f"condition not reached in {timeout}s; last body: {body}")

    return _wait


@pytest.fixture
def completed_backup(
    api: TestClient,  # type: ignore[type-arg]
    pg_db: Database,
    worker: WorkerProcess,
    wait_for: Callable[..., dict[str, Any]],
) -> Callable[[Any], tuple[Any, Any, str, dict[str, Any]]]:
    """``completed_backup(root)``: a new agent's configuration of the folder ``root``, backed up
    through the API by the worker; returns (agent, configuration, admin token, backup body)."""
    from factories import rows
    from factories.api import headers, start_backup, token

    def make(root: Any) -> tuple[Any, Any, str, dict[str, Any]]:
        agent = rows.agent(pg_db)
        config = rows.configuration(
            pg_db, agent, inclusions=[{"type": "folder", "path": f"{root}/"}]
        )
        secret = token(pg_db)
        location = start_backup(api, secret, config.id).headers["location"]
        backup = wait_for(api, location, headers(secret))
        assert backup["state"] == "completed", backup
        return agent, config, secret, backup

    return make
