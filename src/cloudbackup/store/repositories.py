"""Queries and conditional writes, one repository per aggregate.

State changes are compare-and-set: ``UPDATE ... WHERE id = :id AND state IN (:from ...)`` checked
by its row count, which behaves the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Generic, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import SQLModel

from cloudbackup.store.db import rowcount
from cloudbackup.store.tables import (
    AGENTS,
    BACKUPS,
    CONFIGURATIONS,
    EVENTS,
    Backup,
    BackupError,
    Configuration,
    Event,
    table_of,
    utcnow,
)
from cloudbackup.store.tables.idempotency import IDEMPOTENCY_KEYS
from cloudbackup.store.webhook_log import insert_event

SortDir = Literal["asc", "desc"]
T = TypeVar("T")
RunT = TypeVar("RunT", bound=SQLModel)
ErrorT = TypeVar("ErrorT", bound=SQLModel)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool


@dataclass(frozen=True, slots=True)
class StartContext:
    agent_id: str
    deleted: bool
    enabled: bool
    vault_id: str
    agent_enabled: bool
    has_active_run: bool


# Statements of the hot paths are built once: building a statement costs more CPU than running it.
INSERT_BACKUP = sa.insert(BACKUPS)


@lru_cache(maxsize=4)
def start_context_query(active_states: tuple[str, ...]) -> sa.Select[Any]:
    """Everything B1 must know about a configuration (bound: configuration_id, project_id)."""
    active = (
        sa.select(BACKUPS.c.seq)
        .where(
            BACKUPS.c.configuration_id == CONFIGURATIONS.c.id,
            BACKUPS.c.state.in_(active_states),
        )
        .limit(1)
        .exists()
    )
    return (
        sa.select(
            CONFIGURATIONS.c.agent_id,
            CONFIGURATIONS.c.deleted,
            CONFIGURATIONS.c.enabled,
            AGENTS.c.vault_id,
            AGENTS.c.enabled.label("agent_enabled"),
            active.label("has_active_run"),
        )
        .join_from(CONFIGURATIONS, AGENTS, AGENTS.c.id == CONFIGURATIONS.c.agent_id)
        .where(
            CONFIGURATIONS.c.id == sa.bindparam("configuration_id"),
            CONFIGURATIONS.c.project_id == sa.bindparam("project_id"),
        )
    )


def mark_published(session: Session, table: sa.Table, ids: Sequence[str]) -> None:
    """Stamp the rows ``ids`` of ``table`` as published to the broker now."""
    if ids:
        session.execute(
            sa.update(table).where(table.c.id.in_(list(ids))).values(published_at=utcnow())
        )


def keyset_page(
    session: Session,
    query: sa.Select[T],
    column: sa.ColumnElement[Any],
    marker: Any,
    limit: int,
    sort_dir: SortDir,
) -> Page[T]:
    """One page of ``query``'s rows in ``column`` order, after ``marker`` (None: from the
    first), and whether more follow."""
    if marker is not None:
        query = query.where(column > marker if sort_dir == "asc" else column < marker)
    order = column.asc() if sort_dir == "asc" else column.desc()
    rows = list(session.execute(query.order_by(order).limit(limit + 1)).scalars())
    return Page(rows[:limit], len(rows) > limit)


class ProjectRows(Generic[T]):
    """Rows of a project (runs, anomalies) paged in ``seq`` order: a page's marker is a row id."""

    model: ClassVar[type[Any]]
    table: ClassVar[sa.Table]  # the model's (set from it)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "model" in vars(cls):
            cls.table = table_of(cls.model)

    def __init__(self, session: Session) -> None:
        self.session = session

    def seq_of(self, row_id: str, project_id: str) -> int | None:
        """The ``seq`` of the project's row ``row_id``; None: the project has no such row."""
        seq: int | None = self.session.execute(
            sa.select(self.table.c.seq).where(
                self.table.c.id == row_id, self.table.c.project_id == project_id
            )
        ).scalar_one_or_none()
        return seq

    def page(
        self,
        project_id: str,
        *,
        marker_seq: int | None,
        limit: int,
        sort_dir: SortDir,
        where: Sequence[sa.ColumnElement[bool]] = (),
        **equal: Any,
    ) -> Page[T]:
        """The project's rows after ``marker_seq`` that also meet ``where`` and whose columns
        named in ``equal`` hold the values given (None: any value), in ``seq`` order."""
        columns = self.table.c
        query = sa.select(self.model).where(
            columns.project_id == project_id,
            *where,
            *(columns[name] == value for name, value in equal.items() if value is not None),
        )
        return keyset_page(self.session, query, columns.seq, marker_seq, limit, sort_dir)


class RunRepository(ProjectRows[RunT], Generic[RunT, ErrorT]):
    """What every run (backup, restore, cleanup) has: rows with ``seq``, ``id``, ``state``, a
    heartbeat, per-file errors and events."""

    error_model: ClassVar[type[Any]]
    error_table: ClassVar[sa.Table]  # the error model's (set from it)
    run_key: ClassVar[str]  # the column of errors and events naming the run
    agent_key: ClassVar[str] = "agent_id"  # the column naming the agent the run is for

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "error_model" in vars(cls):
            cls.error_table = table_of(cls.error_model)

    def get(self, run_id: str, project_id: str | None = None) -> RunT | None:
        query = sa.select(self.model).where(self.table.c.id == run_id)
        if project_id is not None:
            query = query.where(self.table.c.project_id == project_id)
        row: RunT | None = self.session.execute(query).scalar_one_or_none()
        return row

    def insert(self, values: dict[str, Any]) -> None:
        self.session.execute(sa.insert(self.table), values)

    def compare_and_set(
        self,
        run_id: str,
        from_states: Iterable[str],
        to_state: str,
        values: dict[str, Any] | None = None,
        *,
        attempt: int | None = None,
    ) -> bool:
        """Move the run to ``to_state`` only if it is in one of ``from_states`` now (and, when
        ``attempt`` is given, still owned by that attempt: the executor's fencing token)."""
        query = sa.update(self.table).where(
            self.table.c.id == run_id, self.table.c.state.in_(list(from_states))
        )
        if attempt is not None:
            query = query.where(self.table.c.attempts == attempt)
        result = self.session.execute(
            query.values(state=to_state, updated_at=utcnow(), **(values or {}))
        )
        return bool(rowcount(result))

    def update_where_state(
        self,
        run_id: str,
        states: Iterable[str],
        values: dict[str, Any],
        *,
        heartbeat_was: Any = ...,
        attempt: int | None = None,
    ) -> bool:
        """Write counters/heartbeat while the run is still in one of ``states`` (and, when
        ``heartbeat_was`` is given, still carries that heartbeat: nobody took it over; when
        ``attempt`` is given, is still owned by that attempt)."""
        query = sa.update(self.table).where(
            self.table.c.id == run_id, self.table.c.state.in_(list(states))
        )
        if attempt is not None:
            query = query.where(self.table.c.attempts == attempt)
        if heartbeat_was is not ...:
            column = self.table.c.heartbeat_at
            query = query.where(
                column.is_(None) if heartbeat_was is None else column == heartbeat_was
            )
        result = self.session.execute(query.values(updated_at=utcnow(), **values))
        return bool(rowcount(result))

    def state_of(self, run_id: str) -> str | None:
        state: str | None = self.session.execute(
            sa.select(self.table.c.state).where(self.table.c.id == run_id)
        ).scalar_one_or_none()
        return state

    def heartbeat_of(self, run_id: str) -> Any:
        return self.session.execute(
            sa.select(self.table.c.heartbeat_at).where(self.table.c.id == run_id)
        ).scalar_one_or_none()

    def attempts_of(self, run_id: str) -> int:
        attempts: int = self.session.execute(
            sa.select(self.table.c.attempts).where(self.table.c.id == run_id)
        ).scalar_one()
        return attempts

    def waiting_starts(
        self, states: Iterable[str], published_before: Any, limit: int = 500
    ) -> Sequence[tuple[str, str, Any, Any]]:
        """(id, agent, created_at, published_at) of runs no worker has claimed yet."""
        t = self.table
        published = t.c.published_at
        rows = self.session.execute(
            sa.select(t.c.id, self._agent_column(), t.c.created_at, published)
            .where(
                t.c.state.in_(list(states)),
                t.c.heartbeat_at.is_(None),
                sa.or_(published.is_(None), published < published_before),
            )
            .order_by(t.c.seq)
            .limit(limit)
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def stale_runs(
        self, older_than: Any, states: Iterable[str], limit: int = 500
    ) -> Sequence[tuple[str, str]]:
        """(id, agent) of runs a worker claimed but whose heartbeat stopped (it died)."""
        heartbeat = self.table.c.heartbeat_at
        return self._ids_and_agents(states, limit, heartbeat.is_not(None), heartbeat < older_than)

    def handed_back(
        self, older_than: Any, states: Iterable[str], limit: int = 500
    ) -> Sequence[tuple[str, str]]:
        """(id, agent) of running runs whose executor gave them back (heartbeat cleared) and
        that nobody took over since ``older_than``."""
        t = self.table
        return self._ids_and_agents(
            states, limit, t.c.heartbeat_at.is_(None), t.c.updated_at < older_than
        )

    def _ids_and_agents(
        self, states: Iterable[str], limit: int, *conditions: sa.ColumnElement[bool]
    ) -> Sequence[tuple[str, str]]:
        """(id, agent) of the oldest ``limit`` runs in ``states`` that meet ``conditions``."""
        t = self.table
        rows = self.session.execute(
            sa.select(t.c.id, self._agent_column())
            .where(t.c.state.in_(list(states)), *conditions)
            .order_by(t.c.seq)
            .limit(limit)
        )
        return [(r[0], r[1]) for r in rows]

    def mark_published(self, run_ids: Sequence[str]) -> None:
        mark_published(self.session, self.table, run_ids)

    def replace_errors(self, run_id: str, items: Sequence[ErrorT]) -> None:
        key = self.error_table.c[self.run_key]
        self.session.execute(sa.delete(self.error_table).where(key == run_id))
        self.session.add_all(items)

    def errors(self, run_id: str) -> list[ErrorT]:
        key = self.error_table.c[self.run_key]
        return list(
            self.session.execute(
                sa.select(self.error_model).where(key == run_id).order_by(self.error_table.c.index)
            ).scalars()
        )

    def events(
        self, project_id: str, run_id: str, *, marker: int | None, limit: int, sort_dir: SortDir
    ) -> Page[Event]:
        """EV6/EV7: the events tagged with this run, in event-id order."""
        column = EVENTS.c.id
        query = sa.select(Event).where(
            EVENTS.c.project_id == project_id, EVENTS.c[self.run_key] == run_id
        )
        return keyset_page(self.session, query, column, marker, limit, sort_dir)

    def _agent_column(self) -> sa.ColumnElement[str]:
        column: sa.ColumnElement[str] = self.table.c[self.agent_key]
        return column


class BackupRepository(RunRepository[Backup, BackupError]):
    model = Backup
    error_model = BackupError
    run_key = "backup_id"

    def insert(self, values: dict[str, Any]) -> None:
        """One Core INSERT (the start path is hot: no unit-of-work flush, no statement build)."""
        self.session.execute(INSERT_BACKUP, values)

    def snapshot_owner(self, vault_id: str, snapshot_id: int) -> str | None:
        """The backup of the vault that recorded ``snapshot_id``, if one did."""
        owner: str | None = self.session.execute(
            sa.select(BACKUPS.c.id)
            .where(BACKUPS.c.vault_id == vault_id, BACKUPS.c.snapshot_id == snapshot_id)
            .limit(1)
        ).scalar_one_or_none()
        return owner

    def start_context(
        self, project_id: str, configuration_id: str, active_states: Iterable[str]
    ) -> StartContext | None:
        """Everything B1 must know about a configuration, in one round trip."""
        row = self.session.execute(
            start_context_query(tuple(active_states)),
            {"configuration_id": configuration_id, "project_id": project_id},
        ).first()
        if row is None:
            return None
        return StartContext(*row)

    def has_active(
        self, configuration_id: str, states: Iterable[str], *, before_seq: int | None = None
    ) -> bool:
        query = sa.select(BACKUPS.c.seq).where(
            BACKUPS.c.configuration_id == configuration_id, BACKUPS.c.state.in_(list(states))
        )
        if before_seq is not None:
            query = query.where(BACKUPS.c.seq < before_seq)
        return self.session.execute(query.limit(1)).first() is not None


class ConfigurationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, configuration_id: str, project_id: str | None = None) -> Configuration | None:
        query = sa.select(Configuration).where(CONFIGURATIONS.c.id == configuration_id)
        if project_id is not None:
            query = query.where(CONFIGURATIONS.c.project_id == project_id)
        return self.session.execute(query).scalar_one_or_none()

    def set_last_completed(self, configuration_id: str, backup_id: str) -> None:
        self.session.execute(
            sa.update(Configuration)
            .where(CONFIGURATIONS.c.id == configuration_id)
            .values(last_completed_backup_id=backup_id)
        )


class EventRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def insert(self, **values: Any) -> int:
        """One Core INSERT (events are written often: every state change, progress) and the
        event's webhook deliveries (``store.webhook_log``); returns the event id."""
        values.setdefault("time", utcnow())
        return insert_event(self.session, values)

    def page(
        self,
        project_id: str,
        *,
        marker: int | None,
        limit: int,
        sort_dir: SortDir,
        agent_id: str | None = None,
        configuration_id: str | None = None,
        backup_id: str | None = None,
    ) -> Page[Event]:
        column = EVENTS.c.id
        query = sa.select(Event).where(EVENTS.c.project_id == project_id)
        if agent_id is not None:
            query = query.where(EVENTS.c.agent_id == agent_id)
        if configuration_id is not None:
            query = query.where(EVENTS.c.configuration_id == configuration_id)
        if backup_id is not None:
            query = query.where(EVENTS.c.backup_id == backup_id)
        return keyset_page(self.session, query, column, marker, limit, sort_dir)


# What ``complete`` records of the answer; empty while the key is only reserved.
_RESPONSE_COLUMNS = ("status", "headers", "body", "completed_at")


class IdempotencyRepository:
    """Rows of ``idempotency_keys``; ``created_at`` doubles as the reservation's token, so a
    completion or release by a request that lost its reservation changes nothing."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, key_id: str) -> sa.Row[Any] | None:
        table = IDEMPOTENCY_KEYS
        return self.session.execute(
            sa.select(table).where(table.c.id == key_id).with_for_update()
        ).first()

    def insert(self, key_id: str, project_id: str, fingerprint: str, now: Any) -> None:
        """Reserve the key (raises ``IntegrityError`` when a concurrent request got it first)."""
        self.session.execute(
            sa.insert(IDEMPOTENCY_KEYS).values(
                id=key_id, project_id=project_id, fingerprint=fingerprint, created_at=now
            )
        )

    def take_over(self, key_id: str, was_created: Any, fingerprint: str, now: Any) -> bool:
        """Reuse an expired or abandoned reservation (its answer emptied), if nobody else did
        meanwhile."""
        table = IDEMPOTENCY_KEYS
        result = self.session.execute(
            sa.update(table)
            .where(table.c.id == key_id, table.c.created_at == was_created)
            .values(fingerprint=fingerprint, created_at=now, **dict.fromkeys(_RESPONSE_COLUMNS))
        )
        return bool(rowcount(result))

    def complete(
        self, key_id: str, token: Any, status: int, headers: list[Any], body: bytes
    ) -> None:
        table = IDEMPOTENCY_KEYS
        self.session.execute(
            sa.update(table)
            .where(table.c.id == key_id, table.c.created_at == token, table.c.status.is_(None))
            .values(status=status, headers=headers, body=body, completed_at=utcnow())
        )

    def release(self, key_id: str, token: Any) -> None:
        table = IDEMPOTENCY_KEYS
        self.session.execute(
            sa.delete(table).where(
                table.c.id == key_id, table.c.created_at == token, table.c.status.is_(None)
            )
        )

    def purge(self, older_than: Any) -> int:
        """Forget keys older than the retention time; returns how many went."""
        table = IDEMPOTENCY_KEYS
        result = self.session.execute(sa.delete(table).where(table.c.created_at < older_than))
        return rowcount(result)
