"""Activities AC1-AC3: one uniform, durable summary per backup, restore and cleanup (spec §11,
OQ-35), and whether an agent is busy (A6, OQ-41).

Each kind of run is an :class:`ActivitySource`: its table and which of its columns give the
agent, the configuration and the state. A list is one ``UNION ALL`` over the sources, sorted by
``(last_updated_time, type, id)`` so equal times still page deterministically. A new kind of run
is one more entry in :data:`SOURCES`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.domain.agents import live_agent, storable
from cloudbackup.domain.errors import InvalidInput, NotFound
from cloudbackup.domain.run_states import BACKUP_MACHINE, CLEANUP_MACHINE, RESTORE_MACHINE
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import Page, SortDir
from cloudbackup.store.tables import BACKUPS, CLEANUPS, CONFIGURATIONS, RESTORES, as_utc

Scope = Literal["project", "agent", "configuration"]


@dataclass(frozen=True, slots=True)
class ActivitySource:
    """How one table of runs maps onto the activity fields (spec §11.1)."""

    type: str  # backup | restore | cleanup
    table: sa.Table
    agent_column: str  # backup's agent, restore's destination agent, cleanup's agent
    configuration_column: str | None  # None: the kind has no configuration (cleanups)
    active_states: frozenset[str]  # not final: the agent is busy (A6)

    def select(self) -> sa.Select[Any]:
        t = self.table
        configuration: Any = (
            t.c[self.configuration_column]
            if self.configuration_column
            else sa.null().cast(sa.String)
        )
        return sa.select(
            sa.literal(self.type, sa.String).label("type"),
            t.c.id.label("id"),
            t.c.state.label("state"),
            t.c.updated_at.label("last_updated_time"),
            t.c.project_id.label("project_id"),
            t.c[self.agent_column].label("agent_id"),
            configuration.label("configuration_id"),
        )


def _names(states: Iterable[str]) -> frozenset[str]:
    return frozenset(str(state) for state in states)


# A restore's configuration is its backup's, copied onto the restore row when it is created.
SOURCES: tuple[ActivitySource, ...] = (
    ActivitySource(
        "backup", BACKUPS, "agent_id", "configuration_id", _names(BACKUP_MACHINE.active)
    ),
    ActivitySource(
        "restore",
        RESTORES,
        "destination_agent_id",
        "configuration_id",
        _names(RESTORE_MACHINE.active),
    ),
    ActivitySource("cleanup", CLEANUPS, "agent_id", None, _names(CLEANUP_MACHINE.active)),
)


@dataclass(frozen=True, slots=True)
class Activity:
    id: str
    type: str
    state: str
    last_updated_time: datetime
    agent_id: str
    configuration_id: str | None


class ActivityService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def page(
        self,
        project_id: str,
        *,
        agent_id: str | None = None,
        configuration_id: str | None = None,
        marker: str | None,
        limit: int,
        sort_dir: SortDir,
    ) -> Page[Activity]:
        """AC1 (no filter), AC2 (``agent_id``) or AC3 (``configuration_id``)."""
        with self.db.transaction() as session:
            if agent_id is not None:
                live_agent(session, project_id, agent_id)
            if configuration_id is not None:
                require_configuration(session, project_id, configuration_id)
            union = _union(project_id, agent_id, configuration_id).subquery("activities")
            key = (union.c.last_updated_time, union.c.type, union.c.id)
            query = sa.select(union)
            if marker is not None:
                found = (
                    session.execute(sa.select(*key).where(union.c.id == marker)).first()
                    if storable(marker)
                    else None
                )
                if found is None:
                    raise InvalidInput(
                        "Validation failed.",
                        [f"marker {marker!r} is not an activity of this list."],
                    )
                after = sa.tuple_(*key) > sa.tuple_(*found)
                before = sa.tuple_(*key) < sa.tuple_(*found)
                query = query.where(after if sort_dir == "asc" else before)
            order = [c.asc() if sort_dir == "asc" else c.desc() for c in key]
            rows = session.execute(query.order_by(*order).limit(limit + 1)).all()
        items = [
            Activity(
                id=row.id,
                type=row.type,
                state=row.state,
                last_updated_time=as_utc(row.last_updated_time),
                agent_id=row.agent_id,
                configuration_id=row.configuration_id,
            )
            for row in rows[:limit]
        ]
        return Page(items, len(rows) > limit)


def agent_is_busy(session: Session, project_id: str, agent_id: str) -> bool:
    """True while a backup, restore or cleanup of the agent is not in a final state."""
    for source in SOURCES:
        t = source.table
        active = session.execute(
            sa.select(t.c.id)
            .where(
                t.c.project_id == project_id,
                t.c[source.agent_column] == agent_id,
                t.c.state.in_(sorted(source.active_states)),
            )
            .limit(1)
        ).first()
        if active is not None:
            return True
    return False


def _union(
    project_id: str, agent_id: str | None, configuration_id: str | None
) -> sa.CompoundSelect[Any]:
    parts = []
    for source in SOURCES:
        t = source.table
        query = source.select().where(t.c.project_id == project_id)
        if agent_id is not None:
            query = query.where(t.c[source.agent_column] == agent_id)
        if configuration_id is not None:
            # AC3 (OQ-35): backups of the configuration and restores of those backups only.
            if source.configuration_column is None:
                continue
            query = query.where(t.c[source.configuration_column] == configuration_id)
        parts.append(query)
    return sa.union_all(*parts)


def require_configuration(session: Session, project_id: str, configuration_id: str) -> None:
    """Deleted configurations keep their history (they stay readable, OQ-19)."""
    if not storable(configuration_id):
        raise NotFound("Configuration not found.")
    found = session.execute(
        sa.select(CONFIGURATIONS.c.id).where(
            CONFIGURATIONS.c.id == configuration_id,
            CONFIGURATIONS.c.project_id == project_id,
        )
    ).first()
    if found is None:
        raise NotFound("Configuration not found.")
