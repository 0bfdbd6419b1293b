"""Running and waiting slots of backups (``run_slots``): the admission gate's bookkeeping.

The functions taking a ``Session`` run inside the caller's transaction, so one admission reads
the limits and writes its slot atomically. The backup states that count as final or not started
are the caller's (the domain's state machine): they are passed in as plain values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.store.db import Database, rowcount
from cloudbackup.store.queue_settings import paused_queue_names
from cloudbackup.store.tables import BACKUPS, RUN_SLOTS, utcnow


# Rows of this module's queries, by name.
class Waiting(NamedTuple):
    """A run held back, to publish again when capacity frees up."""

    backup_id: str
    agent_id: str
    queue: str


class Gated(NamedTuple):
    """What admission needs of a backup: its state and whom it belongs to."""

    state: str
    project_id: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class SlotCount:  # not a NamedTuple: a tuple's count() would hide the field
    count: int
    oldest_since: datetime | None


def gated_backup(session: Session, backup_id: str) -> Gated | None:
    row = session.execute(
        sa.select(BACKUPS.c.state, BACKUPS.c.project_id, BACKUPS.c.agent_id).where(
            BACKUPS.c.id == backup_id
        )
    ).first()
    return None if row is None else Gated(*row)


def lock_admissions(session: Session, *keys: str) -> None:
    """Serialise admissions that share a queue or project (SQLite already serialises writers)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for key in sorted(keys):  # one order everywhere: no deadlocks
        session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


def count_running(
    session: Session,
    backup_id: str,
    final_states: Sequence[str],
    *,
    queue: str | None = None,
    agent_id: str | None = None,
    project_id: str | None = None,
) -> int:
    """Running slots of unfinished backups other than ``backup_id`` in ``queue``, of
    ``agent_id`` or of ``project_id`` (the one given)."""
    slots = RUN_SLOTS.c
    query = (
        sa.select(sa.func.count())
        .select_from(RUN_SLOTS)
        .join(BACKUPS, BACKUPS.c.id == slots.backup_id)
        .where(
            slots.state == "running",
            slots.backup_id != backup_id,
            BACKUPS.c.state.not_in(list(final_states)),
            _any_of(queue=queue, agent_id=agent_id, project_id=project_id),
        )
    )
    return int(session.execute(query).scalar_one())


def put_slot(
    session: Session, backup_id: str, project_id: str, agent_id: str, queue: str, reason: str
) -> None:
    """The backup's slot: ``running``, or ``waiting`` with ``reason``."""
    values = {"queue": queue, "state": "waiting" if reason else "running", "reason": reason}
    updated = session.execute(
        sa.update(RUN_SLOTS).where(RUN_SLOTS.c.backup_id == backup_id).values(**values)
    )
    if not rowcount(updated):
        session.execute(
            sa.insert(RUN_SLOTS).values(
                backup_id=backup_id,
                project_id=project_id,
                agent_id=agent_id,
                since=utcnow(),
                **values,
            )
        )


def take_slot(
    session: Session, backup_id: str, final_states: Sequence[str]
) -> tuple[str, str, str] | None:
    """Delete the slot of a backup that is final; its (project, agent, queue), None if none."""
    slot = session.execute(
        sa.select(RUN_SLOTS.c.project_id, RUN_SLOTS.c.agent_id, RUN_SLOTS.c.queue)
        .join(BACKUPS, BACKUPS.c.id == RUN_SLOTS.c.backup_id)
        .where(RUN_SLOTS.c.backup_id == backup_id, BACKUPS.c.state.in_(list(final_states)))
    ).first()
    if slot is None:
        return None
    session.execute(sa.delete(RUN_SLOTS).where(RUN_SLOTS.c.backup_id == backup_id))
    project_id, agent_id, queue = slot
    return project_id, agent_id, queue


def waiting_runs(
    session: Session,
    start_states: Sequence[str],
    limit: int,
    *,
    queue: str | None = None,
    agent_id: str | None = None,
    project_id: str | None = None,
) -> list[Waiting]:
    """The oldest waiting, not started runs outside paused queues that match any of ``queue``,
    ``agent_id``, ``project_id`` (all of them when none is given)."""
    slots = RUN_SLOTS.c
    rows = session.execute(
        sa.select(slots.backup_id, slots.agent_id, slots.queue)
        .join(BACKUPS, BACKUPS.c.id == slots.backup_id)
        .where(
            slots.state == "waiting",
            BACKUPS.c.state.in_(list(start_states)),
            slots.queue.not_in(paused_queue_names()),
            _any_of(queue=queue, agent_id=agent_id, project_id=project_id),
        )
        .order_by(slots.since, slots.backup_id)
        .limit(limit)
    ).all()
    return [Waiting(*row) for row in rows]


def forget_finished_slots(db: Database, final_states: Sequence[str]) -> int:
    """Delete slots whose backup is final or gone (a worker died before releasing it)."""
    with db.transaction() as session:
        live = sa.select(BACKUPS.c.id).where(BACKUPS.c.state.not_in(list(final_states)))
        result = session.execute(sa.delete(RUN_SLOTS).where(RUN_SLOTS.c.backup_id.not_in(live)))
        return rowcount(result)


def slotted_queues(db: Database) -> set[str]:
    """Queues some slot names."""
    with db.transaction() as session:
        return set(session.execute(sa.select(RUN_SLOTS.c.queue).distinct()).scalars())


def slot_counts(db: Database, final_states: Sequence[str]) -> dict[tuple[str, str], SlotCount]:
    """Slots of unfinished backups by (queue, state), with the oldest slot's time."""
    with db.transaction() as session:
        rows = session.execute(
            sa.select(
                RUN_SLOTS.c.queue,
                RUN_SLOTS.c.state,
                sa.func.count(),
                sa.func.min(RUN_SLOTS.c.since),
            )
            .join(BACKUPS, BACKUPS.c.id == RUN_SLOTS.c.backup_id)
            .where(BACKUPS.c.state.not_in(list(final_states)))
            .group_by(RUN_SLOTS.c.queue, RUN_SLOTS.c.state)
        ).all()
    return {(queue, state): SlotCount(n, since) for queue, state, n, since in rows}


def _any_of(**filters: str | None) -> Any:
    slots = RUN_SLOTS.c
    columns = {"queue": slots.queue, "agent_id": slots.agent_id, "project_id": slots.project_id}
    matches = [columns[name] == value for name, value in filters.items() if value is not None]
    return sa.or_(*matches) if matches else sa.true()
