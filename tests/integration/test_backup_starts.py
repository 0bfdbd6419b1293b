"""B1's asyncio path (``BackupStarter`` on ``store.backup_starts``) on both databases: the
embedded SQLite default and the real PostgreSQL (asyncpg, one CTE statement per insert)."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cloudbackup.domain.backups import BackupService, BackupStarter
from cloudbackup.domain.errors import Conflict, DomainError, Forbidden, NotFound, Unavailable
from cloudbackup.store.backup_starts import (
    PostgresBackupStarts,
    SqlBackupStarts,
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
    # The race's window, frozen: the context shows no active run, yet the lock is taken.
    rows.backup(db, config.id, state="completed", active_manual_lock=config.id)

    with pytest.raises(Conflict):
        start(db.url, agent.project_id, config.id, "start_requested", None)

    assert len(table_rows(db, BACKUPS, configuration_id=config.id)) == 1
    assert table_rows(db, EVENTS, configuration_id=config.id) == []


CASES = list(
    itertools.product(
        ["start_requested", "start_scheduled"],
        [False, True],  # deleted
        [False, True],  # configuration enabled
        [False, True],  # agent enabled
        [False, True],  # another run active
        ["none", "agent", "other"],  # X-Agent-Id
    )
)


def test_the_fast_path_decides_every_case_as_the_sync_path(db: Database) -> None:
    other = rows.agent(db)

    def setup(deleted: bool, enabled: bool, agent_enabled: bool, active: bool) -> Any:
        agent = rows.agent(db, enabled=agent_enabled)
        config = rows.configuration(db, agent, deleted=deleted, enabled=enabled)
        if active:
            rows.backup(db, config.id, state="in_progress")
        return agent, config

    def outcome(call: Any) -> str:
        try:
            call()
        except DomainError as exc:
            return f"{type(exc).__name__}: {exc}"
        return "started"

    seen = set()
    for state, deleted, enabled, agent_enabled, active, header in CASES:
        results = []
        for path in ("sync", "fast"):
            agent, config = setup(deleted, enabled, agent_enabled, active)
            agent_header = {"none": None, "agent": agent.id, "other": other.id}[header]
            args = (agent.project_id, config.id, state, agent_header)
            if path == "sync":
                results.append(outcome(lambda a=args: BackupService(db).start(*a)))
            else:
                results.append(outcome(lambda a=args: start(db.url, *a)))
        case = (state, deleted, enabled, agent_enabled, active, header)
        assert results[0] == results[1], case
        seen.add(results[0].split(":")[0])
    assert seen >= {"started", "Forbidden", "Conflict", "InvalidInput"}


def test_the_event_of_a_fast_start_is_the_one_the_sync_path_writes(db: Database) -> None:
    agent = rows.agent(db)
    fast = start(
        db.url, agent.project_id, rows.configuration(db, agent).id, "start_requested", None
    )
    slow = BackupService(db).start(
        agent.project_id, rows.configuration(db, agent).id, "start_requested", None
    )

    def shape(backup_id: str, config_id: str, request_id: str) -> dict[str, Any]:
        (event,) = table_rows(db, EVENTS, backup_id=backup_id)
        event.pop("id")
        event.pop("time")
        text = json.dumps(event["members"])
        for value, name in ((backup_id, "B"), (config_id, "C"), (request_id, "R")):
            text = text.replace(value, name)
        return {**event, "backup_id": "B", "configuration_id": "C", "members": json.loads(text)}

    assert shape(fast.id, fast.configuration_id, fast.request_id) == shape(
        slow.id, slow.configuration_id, slow.request_id
    )
    assert list(table_rows(db, EVENTS, backup_id=fast.id)[0]["members"]) == [
        "agent",
        "configuration",
        "backup",
        "request_id",
    ]


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


@pytest.mark.parametrize(
    ("project_id", "configuration_id"),
    [("110011", "c" * 100_000), ("110011", "c" * 37), ("p" * 65, "c"), ("110011", "a\x00b")],
)
def test_an_id_no_row_can_have_is_404_before_the_database(
    db: Database, project_id: str, configuration_id: str
) -> None:
    agent = rows.agent(db)
    rows.configuration(db, agent)
    with pytest.raises(NotFound, match=r"Configuration not found\."):
        start(db.url, project_id, configuration_id, "start_requested", None)
    assert table_rows(db, BACKUPS, agent_id=agent.id) == []
