"""B1's asyncio path (``BackupStarter`` on ``store.backup_starts``) on both databases: the
embedded SQLite default and the real PostgreSQL (asyncpg, one CTE statement per insert)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cloudbackup.domain.backups import BackupStarter
from cloudbackup.domain.errors import Conflict, Forbidden, NotFound, Unavailable
from cloudbackup.store.backup_starts import (
    PostgresBackupStarts,
    SqlBackupStarts,
    StartConflict,
    backup_start_store,
)
from cloudbackup.store.db import Database
from cloudbackup.store.tables import BACKUPS, EVENTS
from factories import rows
from factories.private_services import free_port
from factories.runs import AsyncRecorder


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    template = request.getfixturevalue("migrated_sqlite_template")
    path = tmp_path / "starts.db"
    shutil.copy(template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def start(url: str, *args: Any, dispatcher: AsyncRecorder | None = None) -> Any:
    async def run() -> Any:
        store = backup_start_store(url)
        try:
            return await BackupStarter(store, dispatcher).start(*args)
        finally:
            await store.close()

    return asyncio.run(run())


def table_rows(db: Database, table: sa.Table, **where: str) -> list[dict[str, Any]]:
    query = sa.select(table).where(*(table.c[k] == v for k, v in where.items()))
    with db.engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(query)]


def test_a_start_writes_the_run_and_its_event_then_publishes(db: Database) -> None:
    agent = rows.agent(db)
    config = rows.configuration(db, agent)
    recorder = AsyncRecorder()

    backup = start(
        db.url, agent.project_id, config.id, "start_requested", None, dispatcher=recorder
    )

    (row,) = table_rows(db, BACKUPS, configuration_id=config.id)
    assert row["id"] == backup.id
    assert row["agent_id"] == agent.id and row["vault_id"] == agent.vault_id
    assert row["state"] == "start_requested" and row["active_manual_lock"] == config.id
    assert (row["files_searched"], row["bytes_in_db"], row["restorable"]) == (0, 0, False)
    (event,) = table_rows(db, EVENTS, backup_id=backup.id)
    assert event["event"] == "backup_start_request"
    assert event["members"]["backup"] == {"id": backup.id}
    assert event["members"]["request_id"] == row["request_id"]
    assert recorder.published == [("backup", backup.id, agent.id)]
    assert (backup.files_searched, backup.restorable, backup.started_time) == (0, False, None)


def test_a_second_manual_start_is_refused_and_writes_nothing(db: Database) -> None:
    agent = rows.agent(db)
    config = rows.configuration(db, agent)
    start(db.url, agent.project_id, config.id, "start_requested", None)
    recorder = AsyncRecorder()

    with pytest.raises(Conflict):
        start(db.url, agent.project_id, config.id, "start_requested", None, dispatcher=recorder)

    assert len(table_rows(db, BACKUPS, configuration_id=config.id)) == 1
    assert len(table_rows(db, EVENTS, configuration_id=config.id)) == 1
    assert recorder.published == []


def test_the_rules_of_b1_hold_on_the_fast_path(db: Database) -> None:
    agent = rows.agent(db)
    config = rows.configuration(db, agent)
    deleted = rows.configuration(db, agent, deleted=True)
    other = rows.agent(db, project_id="220022")

    with pytest.raises(NotFound):
        start(db.url, "220022", config.id, "start_requested", None)  # another project's
    with pytest.raises(Forbidden):
        start(db.url, agent.project_id, config.id, "start_scheduled", other.id)
    with pytest.raises(Conflict):
        start(db.url, agent.project_id, deleted.id, "start_requested", None)
    assert table_rows(db, BACKUPS, agent_id=agent.id) == []
    assert table_rows(db, EVENTS, agent_id=agent.id) == []

    scheduled = start(db.url, agent.project_id, config.id, "start_scheduled", agent.id)
    assert scheduled.state == "start_scheduled" and scheduled.active_manual_lock is None


def test_losing_the_manual_lock_race_leaves_no_run_and_no_event(db: Database) -> None:
    agent = rows.agent(db)
    config = rows.configuration(db, agent)
    winner = start(db.url, agent.project_id, config.id, "start_requested", None)
    loser = {**table_rows(db, BACKUPS, id=winner.id)[0]}
    loser.pop("seq")
    loser.update(id="f" * 36, request_id="e" * 36)
    event = {
        "time": loser["created_at"],
        "event": "backup_started",
        "project_id": agent.project_id,
        "backup_id": loser["id"],
        "members": {"backup": {"id": loser["id"]}},
    }

    async def insert_past_the_check() -> None:
        # The check saw no active run, then the winner took the lock: only the insert can tell.
        store = backup_start_store(db.url)
        try:
            async with store.session() as session:
                await session.insert(loser, event)
        finally:
            await store.close()

    with pytest.raises(StartConflict):
        asyncio.run(insert_past_the_check())
    assert table_rows(db, BACKUPS, id=loser["id"]) == []
    assert table_rows(db, EVENTS, backup_id=loser["id"]) == []


def test_the_store_fits_the_database(database_url: str) -> None:
    store = backup_start_store(database_url)
    expected = PostgresBackupStarts if database_url.startswith("postgresql") else SqlBackupStarts
    assert isinstance(store, expected)
    asyncio.run(store.close())


def test_an_unreachable_postgresql_is_unavailable_not_an_error() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"

    async def run() -> None:
        store = PostgresBackupStarts(url, connect_timeout=1)
        try:
            await BackupStarter(store, None).start("110011", "c", "start_requested", None)
        finally:
            await store.close()

    with pytest.raises(Unavailable):
        asyncio.run(run())


def test_a_database_url_of_no_known_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database URL: mysql"):
        backup_start_store("mysql://db/x")
