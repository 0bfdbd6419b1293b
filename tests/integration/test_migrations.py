"""`cloudbackup db upgrade` from an empty database, on PostgreSQL and SQLite; models match."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cloudbackup.store import migrate
from cloudbackup.store.db import create_db_engine
from factories.services import fresh_postgres_database

pytestmark = pytest.mark.services


def _tables(url: str) -> set[str]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_upgrade_check_downgrade_from_empty(backend, services, tmp_path):
    if backend == "sqlite":
        urls = [f"sqlite:///{tmp_path / 'm.db'}"]
        context = None
    else:
        context = fresh_postgres_database()
        urls = [context.__enter__()]
    try:
        url = urls[0]
        migrate.upgrade(url)
        assert {
            "agents",
            "configurations",
            "backups",
            "backup_errors",
            "events",
            "api_tokens",
        } <= _tables(url)
        migrate.check(url)  # raises if the models and the migrations disagree
        migrate.downgrade(url, "base")
        assert _tables(url) <= {"alembic_version"}
        migrate.upgrade(url)
    finally:
        if context is not None:
            context.__exit__(None, None, None)
