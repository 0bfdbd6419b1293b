"""The migrations are history: up to 0009 they emit the DDL they emitted when they were written.

Pinned as digests: of Alembic's offline SQL on PostgreSQL (statement for statement, up and down),
and of the schema SQLite holds after the upgrade (batch mode re-creates tables there, which needs
a live database and orders a re-created table's indexes as it likes, so its statements sorted).

A failure means an old migration, or a builder of ``store/migrations/ddl.py`` it calls, was
edited: databases already upgraded would differ from new ones. Undo it; a change of schema is a
new migration. (To see the difference, write ``_offline_sql`` of both trees to files and diff.)
"""

from __future__ import annotations

import hashlib
import io

import pytest
from alembic import command

from cloudbackup.store import migrate
from cloudbackup.store.db import create_db_engine
from cloudbackup.store.migrate import alembic_config

HISTORY_HEAD = "70f22a77c13f"  # 0009_restore_drills; later migrations are not pinned here

POSTGRESQL = {
    "upgrade": "7fa23294730023e1a2128d2e43401313f0cf215b42fc5e7f82f228fc5e7d963d",
    "downgrade": "474984e7650f32f7a52c3d3003dafbc6cb88daa454ea944e299671fffa46f31f",
}
SQLITE = "0bd9c8b7d3b946ba0ffe5c1908e65f95475369ac5e0dd63d12697fb1ca6de3f3"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _offline_sql(direction: str) -> str:
    """Alembic's ``--sql`` output of the history on PostgreSQL, up or down (no database)."""
    config = alembic_config("postgresql://offline@127.0.0.1:5432/none")
    config.output_buffer = io.StringIO()
    if direction == "upgrade":
        command.upgrade(config, f"base:{HISTORY_HEAD}", sql=True)
    else:
        command.downgrade(config, f"{HISTORY_HEAD}:base", sql=True)
    return config.output_buffer.getvalue()


@pytest.mark.parametrize("direction", sorted(POSTGRESQL))
def test_the_history_emits_the_postgresql_ddl_it_always_did(direction):
    sql = _offline_sql(direction)
    assert sql.count("CREATE TABLE" if direction == "upgrade" else "DROP TABLE") == (
        32 if direction == "upgrade" else 31
    )
    assert _digest(sql) == POSTGRESQL[direction]


def test_the_history_builds_the_sqlite_schema_it_always_did(tmp_path):
    url = f"sqlite:///{tmp_path / 'history.db'}"
    migrate.upgrade(url, HISTORY_HEAD)
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            found = connection.exec_driver_sql("SELECT sql FROM sqlite_master").scalars().all()
    finally:
        engine.dispose()
    statements = sorted(sql for sql in found if sql)
    assert sum(sql.startswith("CREATE TABLE") for sql in statements) == 32
    assert _digest(";\n".join(statements)) == SQLITE
