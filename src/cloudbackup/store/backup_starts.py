"""B1's database work on asyncio: the API's hottest path.

Starting a backup reads the configuration's start context and, if the rules admit the start,
inserts the run and its start event. The rules stay in the domain: it hands over their truth
table, the set of :class:`StartFlags` flags it admits, and the store applies it.

* :class:`PostgresBackupStarts`, on an asyncpg pool: all of it is one statement (data-modifying
  CTEs, atomic in autocommit), compiled once from Core, so a start costs one round trip and no
  SQLAlchemy execution overhead (round trips and SQLAlchemy were most of the request's CPU);
* :class:`SqlBackupStarts`, on SQLAlchemy's asyncio engine for the SQLite default: the read and
  the inserts in one transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.sql.compiler import SQLCompiler

from cloudbackup.errors import Unavailable
from cloudbackup.store.db import AsyncSqliteDatabase, is_sqlite
from cloudbackup.store.repositories import (
    INSERT_BACKUP,
    StartContext,
    start_context_query,
)
from cloudbackup.store.tables import BACKUPS, CONFIGURATIONS, EVENTS, WEBHOOK_DELIVERIES
from cloudbackup.store.tables.events import backup_event_row
from cloudbackup.store.webhook_log import DELIVERY_COLUMNS, deliveries_of, insert_event_async


class StartConflict(Exception):
    """The insert broke a constraint: another active run holds the configuration's manual lock."""


class StartFlags(NamedTuple):
    """The flags of a start context that decide whether a start is admitted."""

    deleted: bool
    enabled: bool
    agent_enabled: bool
    has_active_run: bool
    header_is_agent: bool  # X-Agent-Id names the configuration's agent


def start_flags_of(context: StartContext, agent_header: str | None) -> StartFlags:
    return StartFlags(
        context.deleted,
        context.enabled,
        context.agent_enabled,
        context.has_active_run,
        agent_header is not None and agent_header == context.agent_id,
    )


@dataclass(frozen=True, slots=True)
class NewRun:
    """What is known of a new run before its configuration is read."""

    id: str
    project_id: str
    configuration_id: str
    state: str
    request_id: str
    active_manual_lock: str | None
    now: datetime
    agent_header: str | None
    event: str

    def row(self, agent_id: str, vault_id: str) -> dict[str, Any]:
        """Its ``backups`` row (columns with defaults left out)."""
        return {
            "id": self.id,
            "project_id": self.project_id,
            "agent_id": agent_id,
            "configuration_id": self.configuration_id,
            "vault_id": vault_id,
            "state": self.state,
            "request_id": self.request_id,
            "active_manual_lock": self.active_manual_lock,
            "published_at": self.now,
            "created_at": self.now,
            "updated_at": self.now,
        }

    def event_row(self, agent_id: str) -> dict[str, Any]:
        return backup_event_row(
            self.event,
            project_id=self.project_id,
            agent_id=agent_id,
            configuration_id=self.configuration_id,
            backup_id=self.id,
            request_id=self.request_id,
            time=self.now,
        )


class StartResult(NamedTuple):
    """The configuration's context (None: no such configuration in the project), whether the
    run was inserted, and the webhook deliveries its start event queued (to publish)."""

    context: StartContext | None
    inserted: bool
    webhook_deliveries: list[int]


class BackupStartStore(Protocol):
    async def start(
        self, run: NewRun, *, active_states: Iterable[str], admitted: frozenset[StartFlags]
    ) -> StartResult:
        """Read the configuration's context; if its :class:`StartFlags` is in ``admitted``,
        insert the run, its event and the event's webhook deliveries; :class:`StartConflict`
        on a constraint."""
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
    return SqlBackupStarts(AsyncSqliteDatabase(url))


class SqlBackupStarts:
    """The store on SQLAlchemy's asyncio engine (SQLite): the read and the inserts in one
    transaction."""

    def __init__(self, db: AsyncSqliteDatabase) -> None:
        self.db = db

    async def start(
        self, run: NewRun, *, active_states: Iterable[str], admitted: frozenset[StartFlags]
    ) -> StartResult:
        try:
            async with self.db.transaction() as connection:
                result = await connection.execute(
                    start_context_query(tuple(active_states)),
                    {"configuration_id": run.configuration_id, "project_id": run.project_id},
                )
                row = result.first()
                context = None if row is None else StartContext(*row)
                if context is None or start_flags_of(context, run.agent_header) not in admitted:
                    return StartResult(context, False, [])
                await connection.execute(INSERT_BACKUP, run.row(context.agent_id, context.vault_id))
                deliveries = await insert_event_async(connection, run.event_row(context.agent_id))
                return StartResult(context, True, deliveries)
        except sa.exc.IntegrityError as exc:
            raise StartConflict(str(exc.orig)) from exc

    async def close(self) -> None:
        await self.db.dispose()


# -- PostgreSQL ----------------------------------------------------------------------------------
_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
# The Python-side defaults of the columns (counters 0, restorable false, ...): raw SQL gets no
# help from SQLAlchemy, so every column is given explicitly.
_BACKUP_DEFAULTS = {
    c.name: c.default.arg
    for c in BACKUPS.c
    if isinstance(c.default, sa.ColumnDefault) and c.default.is_scalar
}
_FROM_CONTEXT = ("agent_id", "vault_id")


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


@lru_cache(maxsize=8)
def _start_statement(
    active_states: tuple[str, ...], admitted: frozenset[StartFlags], backup_columns: tuple[str, ...]
) -> _Compiled:
    """One statement: ``WITH ctx AS (the start context), new_backup AS (INSERT ... SELECT FROM
    ctx WHERE its admission is admitted), new_event AS (INSERT ... SELECT FROM new_backup)
    SELECT ctx.*, whether new_backup holds a row``."""
    header_is_agent = sa.func.coalesce(
        CONFIGURATIONS.c.agent_id == sa.bindparam("agent_header", type_=sa.String), sa.false()
    )
    ctx = start_context_query(active_states).add_columns(header_is_agent.label("header_is_agent"))
    ctx_cte = ctx.cte("ctx")
    flags = [ctx_cte.c[name] for name in StartFlags._fields]
    admits = sa.or_(
        sa.false(),
        *(
            sa.and_(*(f if on else sa.not_(f) for f, on in zip(flags, a, strict=True)))
            for a in admitted
        ),
    )
    backup_values = [
        ctx_cte.c[name]
        if name in _FROM_CONTEXT
        else sa.bindparam(f"b_{name}", type_=BACKUPS.c[name].type)
        for name in backup_columns
    ]
    new_backup = (
        sa.insert(BACKUPS)
        .from_select(list(backup_columns), sa.select(*backup_values).where(admits))
        .returning(BACKUPS.c.id, BACKUPS.c.agent_id)
        .cte("new_backup")
    )

    def text(name: str) -> sa.BindParameter[str]:
        return sa.bindparam(name, type_=sa.String)

    # The members of `backup_event_row`, built where the agent's id is known.
    members = sa.func.json_build_object(
        "agent",
        sa.func.json_build_object("id", new_backup.c.agent_id),
        "configuration",
        sa.func.json_build_object("id", text("configuration_id")),
        "backup",
        sa.func.json_build_object("id", new_backup.c.id),
        "request_id",
        text("request_id"),
    )
    event_values = sa.select(
        sa.bindparam("now", type_=EVENTS.c.time.type),
        text("event"),
        text("project_id"),
        new_backup.c.agent_id,
        text("configuration_id"),
        new_backup.c.id,
        members,
    )
    event_columns = ["time", "event", "project_id", "agent_id", "configuration_id", "backup_id"]
    new_event = (
        sa.insert(EVENTS)
        .from_select([*event_columns, "members"], event_values)
        .returning(EVENTS.c.id)
        .cte("new_event")
    )
    # The event's webhook deliveries (``store.webhook_log``), from the inserted event.
    deliveries = (
        sa.insert(WEBHOOK_DELIVERIES)
        .from_select(
            list(DELIVERY_COLUMNS),
            deliveries_of(
                new_event.c.id,
                text("event"),
                text("project_id"),
                sa.bindparam("now", type_=EVENTS.c.time.type),
            ),
        )
        .returning(WEBHOOK_DELIVERIES.c.id)
        .cte("new_deliveries")
    )
    inserted = sa.exists(sa.select(new_backup.c.id)).label("inserted")
    delivery_ids = (
        sa.select(sa.func.array_agg(deliveries.c.id)).scalar_subquery().label("deliveries")
    )
    statement = sa.select(
        *(ctx_cte.c[c.name] for c in ctx.selected_columns if c.name != "header_is_agent"),
        inserted,
        delivery_ids,
    ).add_cte(new_event)
    names = ["agent_header", "configuration_id", "project_id", "request_id", "event", "now"]
    names += [f"b_{n}" for n in backup_columns if n not in _FROM_CONTEXT]
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

    async def start(
        self, run: NewRun, *, active_states: Iterable[str], admitted: frozenset[StartFlags]
    ) -> StartResult:
        # The agent and vault come from the context row inside the statement (_FROM_CONTEXT).
        row = _BACKUP_DEFAULTS | run.row(agent_id="", vault_id="")
        statement = _start_statement(tuple(active_states), admitted, tuple(row))
        values = {f"b_{k}": v for k, v in row.items()}
        values.update(
            agent_header=run.agent_header,
            configuration_id=run.configuration_id,
            project_id=run.project_id,
            request_id=run.request_id,
            event=run.event,
            now=run.now,
        )
        try:
            pool = await self._get_pool()
            async with pool.acquire(timeout=self.connect_timeout + 2) as connection:
                result = await connection.fetchrow(statement.sql, *statement.args(values))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise StartConflict(str(exc)) from exc
        except (
            OSError,
            TimeoutError,
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            asyncpg.exceptions.OperatorInterventionError,
            asyncpg.exceptions.InsufficientResourcesError,
        ) as exc:
            raise Unavailable("The database is unreachable; retry in a few seconds.") from exc
        if result is None:
            return StartResult(None, False, [])
        *context, inserted, deliveries = result
        return StartResult(StartContext(*context), bool(inserted), list(deliveries or []))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
