"""B1's database work on asyncio: the API's hottest path.

Starting a backup reads the configuration's start context, then inserts the run and its start
event atomically. Two stores do it:

* :class:`PostgresBackupStarts`, on an asyncpg pool: the SQL is compiled once from the same Core
  statements the sync path runs, the run and its event go in as one statement (a data-modifying
  CTE, atomic in autocommit), so a start costs two round trips and no ORM or SQLAlchemy
  execution overhead, which measured as about a third of the request's CPU;
* :class:`SqlBackupStarts`, on any SQLAlchemy asyncio engine (the SQLite default): the read and
  two inserts in one transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import asyncpg
import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler

from cloudbackup.domain.errors import Unavailable
from cloudbackup.store.db import AsyncDatabase, is_sqlite
from cloudbackup.store.repositories import (
    INSERT_BACKUP,
    INSERT_EVENT,
    StartContext,
    start_context_query,
)
from cloudbackup.store.tables import BACKUPS, EVENTS


class StartConflict(Exception):
    """The insert broke a constraint: another active run holds the configuration's manual lock."""


class StartSession(Protocol):
    """One connection's worth of starting a backup."""

    async def context(
        self, project_id: str, configuration_id: str, active_states: Iterable[str]
    ) -> StartContext | None:
        """What B1 must know about the configuration (None: no such configuration here)."""
        ...

    async def insert(self, backup: dict[str, Any], event: dict[str, Any]) -> None:
        """Insert the run and its event atomically (:class:`StartConflict` on a constraint)."""
        ...


class BackupStartStore(Protocol):
    def session(self) -> AbstractAsyncContextManager[StartSession]:
        """A connection for one start: its context read and its insert."""
        ...

    async def close(self) -> None: ...


def backup_start_store(
    url: str, *, connect_timeout: int = 3, pool_size: int = 20
) -> BackupStartStore:
    """The fastest store for the database at ``url`` (a plain URL, as in the settings)."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresBackupStarts(url, connect_timeout=connect_timeout, pool_size=pool_size)
    if not is_sqlite(url):
        raise ValueError(f"unsupported database URL: {url.split(':', 1)[0]}")
    return SqlBackupStarts(AsyncDatabase(url, connect_timeout=connect_timeout))


class SqlBackupStarts:
    """The store on a SQLAlchemy asyncio engine: the read and the inserts in one transaction."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db

    @asynccontextmanager
    async def session(self) -> AsyncIterator[StartSession]:
        try:
            async with self.db.transaction() as connection:
                yield _SqlStartSession(connection)
        except sa.exc.IntegrityError as exc:
            raise StartConflict(str(exc.orig)) from exc

    async def close(self) -> None:
        await self.db.dispose()


class _SqlStartSession:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def context(
        self, project_id: str, configuration_id: str, active_states: Iterable[str]
    ) -> StartContext | None:
        result = await self.connection.execute(
            start_context_query(tuple(active_states)),
            {"configuration_id": configuration_id, "project_id": project_id},
        )
        row = result.first()
        return None if row is None else StartContext(*row)

    async def insert(self, backup: dict[str, Any], event: dict[str, Any]) -> None:
        try:
            await self.connection.execute(INSERT_BACKUP, backup)
            await self.connection.execute(INSERT_EVENT, event)
        except sa.exc.IntegrityError as exc:
            raise StartConflict(str(exc.orig)) from exc


# -- PostgreSQL ----------------------------------------------------------------------------------
_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
_json = msgspec.json.Encoder()
# The Python-side defaults of the columns (counters 0, restorable false, ...): raw SQL gets no
# help from SQLAlchemy, so every column is given explicitly.
_BACKUP_DEFAULTS = {
    c.name: c.default.arg
    for c in BACKUPS.c
    if isinstance(c.default, sa.ColumnDefault) and c.default.is_scalar
}


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A Core statement compiled once for asyncpg: its SQL and the order of its parameters."""

    sql: str
    names: tuple[str, ...]
    constants: dict[str, Any]

    @classmethod
    def of(cls, statement: Any, **placeholders: Any) -> _Compiled:
        """Compile ``statement``; ``placeholders`` stand in for its named parameters while an
        ``IN`` list of constants is expanded into the SQL."""
        compiled: SQLCompiler = statement.compile(dialect=_DIALECT)
        expanded = compiled.construct_expanded_state(placeholders or None)
        names = tuple(expanded.positiontup or ())
        return cls(expanded.statement, names, dict(expanded.parameters))

    def args(self, values: dict[str, Any]) -> list[Any]:
        return [values[n] if n in values else self.constants[n] for n in self.names]


@lru_cache(maxsize=4)
def _context_statement(active_states: tuple[str, ...]) -> _Compiled:
    return _Compiled.of(start_context_query(active_states), configuration_id="", project_id="")


@lru_cache(maxsize=4)
def _insert_statement(backup_columns: tuple[str, ...], event_columns: tuple[str, ...]) -> _Compiled:
    """``WITH new_backup AS (INSERT INTO backups ...) INSERT INTO events ...``: one statement,
    so the event exists exactly when the run does."""
    new_backup = (
        sa.insert(BACKUPS)
        .values({name: sa.bindparam(f"b_{name}") for name in backup_columns})
        .returning(BACKUPS.c.seq)
        .cte("new_backup")
    )
    statement = (
        sa.insert(EVENTS)
        .values({name: sa.bindparam(f"e_{name}") for name in event_columns})
        .add_cte(new_backup)
    )
    names = [f"b_{n}" for n in backup_columns] + [f"e_{n}" for n in event_columns]
    return _Compiled.of(statement, **dict.fromkeys(names))


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Pool reset hook: our statements leave no session state (no SET, LISTEN or advisory
    locks), so the default reset, a round trip of four statements, would be pure cost."""


class PostgresBackupStarts:
    """The store on an asyncpg pool (opened on first use, on the serving event loop)."""

    def __init__(self, url: str, *, connect_timeout: int = 3, pool_size: int = 20) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.url,
                        min_size=1,
                        max_size=self.pool_size,
                        timeout=self.connect_timeout,
                        # A hung server gives a 503 within seconds, never a hung request.
                        command_timeout=self.connect_timeout + 7,
                        max_inactive_connection_lifetime=300,
                        reset=_keep_session,
                    )
        return self._pool

    @asynccontextmanager
    async def session(self) -> AsyncIterator[StartSession]:
        try:
            pool = await self._get_pool()
            async with pool.acquire(timeout=self.connect_timeout + 2) as connection:
                yield _PostgresStartSession(connection)
        except (
            OSError,
            TimeoutError,
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            asyncpg.exceptions.OperatorInterventionError,
            asyncpg.exceptions.InsufficientResourcesError,
        ) as exc:
            raise Unavailable("The database is unreachable; retry in a few seconds.") from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class _PostgresStartSession:
    """Each statement on its own, in autocommit: the insert is one atomic statement."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def context(
        self, project_id: str, configuration_id: str, active_states: Iterable[str]
    ) -> StartContext | None:
        statement = _context_statement(tuple(active_states))
        values = {"configuration_id": configuration_id, "project_id": project_id}
        row = await self.connection.fetchrow(statement.sql, *statement.args(values))
        return None if row is None else StartContext(*row)

    async def insert(self, backup: dict[str, Any], event: dict[str, Any]) -> None:
        row = _BACKUP_DEFAULTS | backup
        statement = _insert_statement(tuple(row), tuple(event))
        values = {f"b_{k}": v for k, v in row.items()}
        values.update({f"e_{k}": v for k, v in event.items()})
        if values.get("e_members") is not None:
            values["e_members"] = _json.encode(values["e_members"]).decode()
        try:
            await self.connection.execute(statement.sql, *statement.args(values))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise StartConflict(str(exc)) from exc
