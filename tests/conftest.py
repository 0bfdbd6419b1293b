"""Fixtures for the fast suites: a migrated SQLite database per test and a TCP fakeredis broker.

The integration suites (tests/integration, tests/e2e) bring the real PostgreSQL, Redis and Celery
worker; see tests/integration/conftest.py.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from cloudbackup.queue.publishing import CeleryDispatcher
from cloudbackup.server import create_app
from cloudbackup.settings import Settings, load_settings
from cloudbackup.store import migrate
from cloudbackup.store.db import Database


@pytest.fixture(scope="session")
def fake_broker_url() -> Iterator[str]:
    """A real TCP server speaking Redis (fakeredis): enough to assert what the API published."""
    from fakeredis import TcpFakeServer

    server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"redis://{host}:{port}/0"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


# Hosted runs of the suites may touch any host path but the service's own files (each test's
# data folder, database and vault); the tests of the roots themselves narrow this.
TEST_ROOTS = "/"


@pytest.fixture
def settings(tmp_path: Path, fake_broker_url: str, migrated_sqlite_template: Path) -> Settings:
    db_path = tmp_path / "cloudbackup.db"
    shutil.copy(migrated_sqlite_template, db_path)
    return load_settings(
        {
            # Not tmp_path itself: the data folder is refused to hosted runs, and tests build
            # the trees they back up in tmp_path.
            "CLOUDBACKUP_DATA_DIR": str(tmp_path / "service"),
            "CLOUDBACKUP_ALLOWED_ROOTS": TEST_ROOTS,
            "CLOUDBACKUP_DATABASE_URL": f"sqlite:///{db_path}",
            "CLOUDBACKUP_BROKER_URL": fake_broker_url,
            "CLOUDBACKUP_VAULT_PATH": str(tmp_path / "vault"),
            "CLOUDBACKUP_TOKEN_CACHE_SECONDS": "0",
            "CLOUDBACKUP_BACKUP_QUEUE": f"backups-{tmp_path.name}",
        }
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.resolved_database_url)
    yield database
    database.dispose()


@pytest.fixture
def client(settings: Settings, db: Database) -> Iterator[TestClient]:  # type: ignore[type-arg]
    app = create_app(settings, database=db, dispatcher=CeleryDispatcher.from_settings(settings))
    with TestClient(app=app) as test_client:
        yield test_client
