"""Engine and session factory for SQLite (embedded default) and PostgreSQL.

Users give plain ``sqlite:///...`` or ``postgresql://...`` URLs; the drivers are picked here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from cloudbackup.errors import Unavailable

log = logging.getLogger("cloudbackup.store")


def driver_url(url: str) -> str:
    """Map a plain database URL to the SQLAlchemy URL with the driver we use."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# The execution option that marks a read-only transaction (see ``_configure_sqlite``).
READ_ONLY = "cloudbackup_read_only"


def is_sqlite(url: str) -> bool:
    return driver_url(url).startswith("sqlite")


def create_db_engine(url: str, *, connect_timeout: int = 3, pool_size: int = 10) -> Engine:
    """Create the engine; on SQLite turn on WAL, a busy timeout, foreign keys, BEGIN IMMEDIATE."""
    url = driver_url(url)
    if is_sqlite(url):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            # One connection per process: SQLite serialises writers anyway, and waiting in the
            # pool is cheaper than lock retries between pooled connections (field notes).
            poolclass=sa.pool.QueuePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=30,
        )
        _configure_sqlite(engine)
        return engine
    return sa.create_engine(
        url,
        connect_args={"connect_timeout": connect_timeout},
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=connect_timeout + 2,
        pool_recycle=1800,
    )


def create_async_sqlite_engine(url: str) -> AsyncEngine:
    """The asyncio twin of :func:`create_db_engine` for SQLite (aiosqlite, same settings).
    PostgreSQL's asyncio path is asyncpg itself (``store.backup_starts``)."""
    if not is_sqlite(url):
        raise ValueError(f"not a SQLite URL: {url.split(':', 1)[0]}")
    engine = create_async_engine(
        "sqlite+aiosqlite://" + url[len("sqlite://") :],
        connect_args={"timeout": 30},
        poolclass=sa.pool.AsyncAdaptedQueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=30,
    )
    _configure_sqlite(engine.sync_engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # A writer takes the write lock up front (no deadlocking upgrade later); a read-only
        # transaction takes none, so it never holds up writers in other processes.
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


class Database:
    """Owns the engine and hands out sessions; database outages surface as ``Unavailable``."""

    def __init__(self, url: str, *, connect_timeout: int = 3) -> None:
        self.url = url
        self.engine = create_db_engine(url, connect_timeout=connect_timeout)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        # Called with a committed session's ``info`` when it holds anything: how work recorded
        # inside a transaction (webhook deliveries) is published after the commit, never before.
        self.after_commit: list[Callable[[dict[Any, Any]], None]] = []

    def transaction(self) -> AbstractContextManager[Session]:
        """A session inside one transaction: committed on success, rolled back on error."""
        return self._transaction(self._sessions)

    def read(self) -> AbstractContextManager[Session]:
        """A session inside a transaction that only reads: on SQLite it takes no write lock.
        A write in it fails; use :meth:`transaction` for anything that writes."""
        return self._transaction(self._read_sessions)

    @contextmanager
    def _transaction(self, sessions: sessionmaker[Session]) -> Iterator[Session]:
        try:
            with sessions() as session, session.begin():
                yield session
        except sa.exc.OperationalError as exc:
            if is_connection_error(exc):
                raise Unavailable(
                    "The database is unreachable; retry in a few seconds.",
                ) from exc
            raise
        except sa.exc.TimeoutError as exc:  # pool exhausted while the database hangs
            raise Unavailable("The database is not answering; retry in a few seconds.") from exc
        if session.info and self.after_commit:
            for hook in self.after_commit:
                try:
                    hook(session.info)
                except Exception:  # committed already: the sweeps pick up what it missed
                    log.exception("after-commit hook %r failed", hook)

    def dispose(self) -> None:
        self.engine.dispose()


class AsyncSqliteDatabase:
    """Asyncio access to the SQLite database (``Unavailable`` when it stays locked, as above)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_async_sqlite_engine(url)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside one transaction: committed on success, rolled back on error."""
        try:
            async with self.engine.begin() as connection:
                yield connection
        except sa.exc.OperationalError as exc:
            if is_connection_error(exc):
                raise Unavailable("The database is unreachable; retry in a few seconds.") from exc
            raise
        except sa.exc.TimeoutError as exc:
            raise Unavailable("The database is not answering; retry in a few seconds.") from exc

    async def dispose(self) -> None:
        await self.engine.dispose()


def is_connection_error(exc: sa.exc.DBAPIError) -> bool:
    """True when the error means the server is gone, not that the statement was wrong."""
    if exc.connection_invalidated:
        return True
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    markers = (
        "connection",
        "could not connect",
        "server closed",
        "terminating",
        "timeout",
        "database is locked",
        "the database system is",
    )
    return any(m in text for m in markers)


def rowcount(result: sa.Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE: how a compare-and-set learns whether it won."""
    return result.rowcount if isinstance(result, sa.CursorResult) else 0
