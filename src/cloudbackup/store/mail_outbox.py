"""Reads and writes of the mail outbox and the notifier's cursor (``tables.notifications``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cloudbackup.store.db import rowcount
from cloudbackup.store.tables import (
    AGENTS,
    BACKUP_ERRORS,
    BACKUPS,
    CONFIGURATIONS,
    EVENTS,
    MAIL_OUTBOX,
    NOTIFIER_CURSORS,
    SUMMARY_SETTINGS,
    utcnow,
)


@dataclass(frozen=True, slots=True)
class EndedBackup:
    """What a mail about a backup that ended names: read in one query per event."""

    event_id: int
    event: str
    project_id: str
    backup_id: str
    state: str
    configuration_name: str
    notifications: list[dict[str, Any]]
    agent_id: str
    agent_name: str
    started_time: datetime | None
    ended_time: datetime | None
    counters: dict[str, int]
    errors_count: int
    errors_reason: str | None
    errors_diagnostics: str | None


@dataclass(frozen=True, slots=True)
class FirstError:
    path: str
    type: str
    description: str | None


@dataclass(frozen=True, slots=True)
class PeriodLine:
    """One configuration's backups that ended in a period, in one final state."""

    configuration_name: str
    agent_name: str
    state: str
    count: int
    bytes_backed_up: int


_COUNTERS = ("files_searched", "bytes_searched", "files_backed_up", "bytes_backed_up")


class MailOutbox:
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- the cursor -------------------------------------------------------------------------
    def cursor(self, name: str) -> int | None:
        value = self.session.execute(
            sa.select(NOTIFIER_CURSORS.c.last_event_id).where(NOTIFIER_CURSORS.c.name == name)
        ).scalar_one_or_none()
        return None if value is None else int(value)

    def last_event_id(self) -> int:
        return int(self.session.execute(sa.select(sa.func.max(EVENTS.c.id))).scalar() or 0)

    def move_cursor(self, name: str, was: int | None, to: int) -> bool:
        """Compare-and-set the cursor from ``was`` (None: not there yet) to ``to``."""
        if was is None:
            self._insert_ignoring_duplicates(
                NOTIFIER_CURSORS, [{"name": name, "last_event_id": to, "updated_at": utcnow()}]
            )
            return self.cursor(name) == to
        changed = self.session.execute(
            sa.update(NOTIFIER_CURSORS)
            .where(NOTIFIER_CURSORS.c.name == name, NOTIFIER_CURSORS.c.last_event_id == was)
            .values(last_event_id=to, updated_at=utcnow())
        )
        return rowcount(changed) == 1

    # -- what the events are about ------------------------------------------------------------
    def ended_backups(self, after: int, events: Sequence[str], limit: int) -> list[EndedBackup]:
        """Events of backups that ended, after event id ``after``, oldest first."""
        query = (
            sa.select(
                EVENTS.c.id,
                EVENTS.c.event,
                BACKUPS.c.project_id,
                BACKUPS.c.id.label("backup_id"),
                BACKUPS.c.state,
                CONFIGURATIONS.c.name,
                CONFIGURATIONS.c.notifications,
                AGENTS.c.id.label("agent_id"),
                AGENTS.c.name.label("agent_name"),
                BACKUPS.c.started_time,
                BACKUPS.c.ended_time,
                *(BACKUPS.c[name] for name in _COUNTERS),
                BACKUPS.c.errors_count,
                BACKUPS.c.errors_reason,
                BACKUPS.c.errors_diagnostics,
            )
            .join(BACKUPS, BACKUPS.c.id == EVENTS.c.backup_id)
            .join(CONFIGURATIONS, CONFIGURATIONS.c.id == BACKUPS.c.configuration_id)
            .join(AGENTS, AGENTS.c.id == BACKUPS.c.agent_id)
            .where(EVENTS.c.id > after, EVENTS.c.event.in_(list(events)))
            .order_by(EVENTS.c.id)
            .limit(limit)
        )
        return [
            EndedBackup(
                event_id=row.id,
                event=row.event,
                project_id=row.project_id,
                backup_id=row.backup_id,
                state=row.state,
                configuration_name=row.name,
                notifications=list(row.notifications or []),
                agent_id=row.agent_id,
                agent_name=row.agent_name,
                started_time=row.started_time,
                ended_time=row.ended_time,
                counters={name: int(getattr(row, name) or 0) for name in _COUNTERS},
                errors_count=int(row.errors_count or 0),
                errors_reason=row.errors_reason,
                errors_diagnostics=row.errors_diagnostics,
            )
            for row in self.session.execute(query)
        ]

    def first_errors(self, backup_id: str, limit: int) -> list[FirstError]:
        rows = self.session.execute(
            sa.select(
                BACKUP_ERRORS.c.path, BACKUP_ERRORS.c.type, BACKUP_ERRORS.c.exception_description
            )
            .where(BACKUP_ERRORS.c.backup_id == backup_id)
            .order_by(BACKUP_ERRORS.c.index)
            .limit(limit)
        )
        return [FirstError(r.path, r.type, r.exception_description) for r in rows]

    # -- summaries ----------------------------------------------------------------------------
    def summary_recipients(self, period: str) -> list[tuple[str, list[str]]]:
        """(project id, e-mail addresses) of the projects that asked for ``daily``/``weekly``."""
        flag = SUMMARY_SETTINGS.c.daily if period == "daily" else SUMMARY_SETTINGS.c.weekly
        rows = self.session.execute(
            sa.select(SUMMARY_SETTINGS.c.project_id, SUMMARY_SETTINGS.c.notifications)
            .where(flag.is_(True))
            .order_by(SUMMARY_SETTINGS.c.project_id)
        )
        found = []
        for project_id, items in rows:
            to = [str(i["destination"]) for i in items or [] if i.get("type") == "email"]
            if to:
                found.append((project_id, to))
        return found

    def period_lines(self, project_id: str, start: datetime, end: datetime) -> list[PeriodLine]:
        """The project's backups that ended in [start, end), per configuration and state."""
        rows = self.session.execute(
            sa.select(
                CONFIGURATIONS.c.name,
                AGENTS.c.name,
                BACKUPS.c.state,
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(BACKUPS.c.bytes_backed_up), 0),
            )
            .join_from(BACKUPS, CONFIGURATIONS, CONFIGURATIONS.c.id == BACKUPS.c.configuration_id)
            .join(AGENTS, AGENTS.c.id == BACKUPS.c.agent_id)
            .where(
                BACKUPS.c.project_id == project_id,
                BACKUPS.c.ended_time >= start,
                BACKUPS.c.ended_time < end,
            )
            .group_by(CONFIGURATIONS.c.name, AGENTS.c.name, BACKUPS.c.state)
            .order_by(CONFIGURATIONS.c.name, AGENTS.c.name, BACKUPS.c.state)
        )
        return [PeriodLine(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in rows]

    # -- the outbox ---------------------------------------------------------------------------
    def add(self, messages: Sequence[dict[str, Any]]) -> None:
        """Queue messages; one already queued for the same source and recipient is kept."""
        if messages:
            self._insert_ignoring_duplicates(MAIL_OUTBOX, list(messages))

    def due(self, now: datetime, limit: int) -> list[Any]:
        return list(
            self.session.execute(
                sa.select(MAIL_OUTBOX)
                .where(MAIL_OUTBOX.c.state == "pending", MAIL_OUTBOX.c.next_attempt_at <= now)
                .order_by(MAIL_OUTBOX.c.id)
                .limit(limit)
            )
        )

    def lease(self, message_id: int, was: datetime, until: datetime) -> bool:
        """Take a due message for sending (compare-and-set on its next attempt)."""
        changed = self.session.execute(
            sa.update(MAIL_OUTBOX)
            .where(
                MAIL_OUTBOX.c.id == message_id,
                MAIL_OUTBOX.c.state == "pending",
                MAIL_OUTBOX.c.next_attempt_at == was,
            )
            .values(next_attempt_at=until)
        )
        return rowcount(changed) == 1

    def record_attempt(self, message_id: int, **values: Any) -> None:
        self.session.execute(
            sa.update(MAIL_OUTBOX)
            .where(MAIL_OUTBOX.c.id == message_id)
            .values(attempts=MAIL_OUTBOX.c.attempts + 1, **values)
        )

    def counts(self) -> dict[str, int]:
        """Messages waiting to be sent and messages given up on."""
        rows: dict[str, int] = dict(
            self.session.execute(
                sa.select(MAIL_OUTBOX.c.state, sa.func.count())
                .where(MAIL_OUTBOX.c.state.in_(["pending", "failed"]))
                .group_by(MAIL_OUTBOX.c.state)
            ).all()
        )
        return {"pending": int(rows.get("pending", 0)), "failed": int(rows.get("failed", 0))}

    def messages(self, project_id: str | None = None) -> list[Any]:
        query = sa.select(MAIL_OUTBOX).order_by(MAIL_OUTBOX.c.id)
        if project_id is not None:
            query = query.where(MAIL_OUTBOX.c.project_id == project_id)
        return list(self.session.execute(query))

    def _insert_ignoring_duplicates(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        dialect = self.session.get_bind().dialect.name
        module: Any = postgresql if dialect == "postgresql" else sqlite
        self.session.execute(module.insert(table).values(rows).on_conflict_do_nothing())
