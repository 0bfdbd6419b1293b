"""Schedules that fire: the tick that records due runs and keeps waiting runs moving.

Each configuration with a schedule keeps its next run time in
``configurations.next_scheduled_time``. A tick (beat runs one every few seconds) claims every due
configuration with a compare-and-set on that column, moving it to the next occurrence after now,
and records the run through the same service and state machine as B1 (``start_scheduled``, with
the configuration's agent as the caller). The compare-and-set is why two beat processes never
fire one occurrence twice, and the column is why a restarted beat carries on where it stopped.
A run found due later than the window ends ``missed`` at once; occurrences that passed while no
scheduler ran are collapsed into that one run (or one miss). A waiting ``start_scheduled`` run
that no worker started within the window ends ``missed`` too.

Whether a fired run may start is the admission gate's call (``domain.admission``); the tick
re-offers its waiting runs and forgets the slots of finished ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.domain import admission
from cloudbackup.domain.backups import BACKUP_RUNS, BackupService
from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.domain.errors import DomainError
from cloudbackup.domain.run_states import BackupState
from cloudbackup.domain.schedules import ScheduleError, next_occurrence
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database, rowcount
from cloudbackup.store.tables import (
    AGENTS,
    BACKUPS,
    CONFIGURATIONS,
    Backup,
    as_utc,
    utcnow,
)

log = logging.getLogger("cloudbackup.scheduler")

Clock = Callable[[], datetime]
S = BackupState
BATCH = 200  # configurations claimed per transaction


# -- schedules ------------------------------------------------------------------------------


@dataclass(slots=True)
class Fired:
    """A scheduled run recorded by a tick, to publish once its transaction is committed."""

    backup_id: str
    agent_id: str
    lag_seconds: float


@dataclass(slots=True)
class TickReport:
    fired: int = 0
    missed: int = 0  # occurrences found due after their window: recorded as `missed` runs
    passed: int = 0  # occurrences of a disabled agent: skipped without a run
    expired: int = 0  # waiting scheduled runs that no worker started in time: now `missed`
    reoffered: int = 0  # waiting runs published again
    lags: list[float] = field(default_factory=list)  # seconds from due time to firing


def tick(
    db: Database,
    dispatcher: Dispatcher,
    settings: Settings,
    *,
    clock: Clock = utcnow,
    batch: int = BATCH,
) -> TickReport:
    """Fire every due configuration once, expire overdue waiting runs, re-offer waiting runs."""
    report = TickReport()
    now = clock()
    # Each committed batch is published by a helper thread while the next batch is claimed:
    # broker and database round trips overlap instead of adding up.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="schedule-publish") as publisher:
        while True:
            fired, claimed = _fire_batch(db, settings, now, clock, batch, report)
            if fired:
                publisher.submit(_publish, dispatcher, [(r.backup_id, r.agent_id) for r in fired])
            if claimed < batch:
                break
    # Rows carry real creation times, so the window of waiting runs is measured on the real clock.
    report.expired = expire_waiting(db, settings, utcnow())
    for backup_id, agent_id in admission.waiting_to_reoffer(db):
        if dispatcher.publish("backup", backup_id, agent_id=agent_id):
            report.reoffered += 1
    admission.forget_finished_slots(db)
    if report.fired or report.missed or report.expired:
        log.info(
            "schedule tick: fired %d, missed %d, expired %d, passed %d",
            report.fired,
            report.missed,
            report.expired,
            report.passed,
        )
    return report


def _publish(dispatcher: Dispatcher, runs: list[tuple[str, str]]) -> None:
    many = getattr(dispatcher, "publish_many", None)  # one broker connection for a batch
    if many is not None:
        many("backup", runs)
        return
    for backup_id, agent_id in runs:
        dispatcher.publish("backup", backup_id, agent_id=agent_id)


def _due(now: datetime) -> tuple[sa.ColumnElement[bool], ...]:
    """A live schedule due by ``now`` (over configurations joined with their agents)."""
    c = CONFIGURATIONS.c
    return (
        c.next_scheduled_time <= now,
        c.deleted.is_(False),
        c.enabled.is_(True),
        AGENTS.c.deleted.is_(False),
    )


def _due_query(now: datetime, limit: int) -> sa.Select[Any]:
    c = CONFIGURATIONS.c
    return (
        sa.select(
            c.id,
            c.project_id,
            c.agent_id,
            c.schedule,
            c.next_scheduled_time,
            AGENTS.c.enabled,
        )
        .join_from(CONFIGURATIONS, AGENTS, AGENTS.c.id == c.agent_id)
        .where(*_due(now))
        .order_by(c.next_scheduled_time, c.id)
        .limit(limit)
    )


class _Retry(Exception):
    """The fast path met a configuration that changed under it: redo the batch carefully."""


def _fire_batch(
    db: Database,
    settings: Settings,
    now: datetime,
    clock: Clock,
    batch: int,
    report: TickReport,
) -> tuple[list[Fired], int]:
    """Claim and fire up to ``batch`` due configurations in one transaction.

    The due rows are locked (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so a second scheduler
    takes other rows; SQLite serialises writers anyway) and moved on with one compare-and-set
    statement. If a run cannot be recorded (its configuration was disabled a moment ago), the
    batch is redone with a savepoint per configuration.
    """
    try:
        outcome = _claim(db, settings, now, clock, batch, careful=False)
    except _Retry:
        outcome = _claim(db, settings, now, clock, batch, careful=True)
    fired, passed, missed, claimed = outcome
    report.fired += len(fired)
    report.passed += passed
    report.missed += missed
    report.lags += [run.lag_seconds for run in fired]
    return fired, claimed


def _claim(
    db: Database, settings: Settings, now: datetime, clock: Clock, batch: int, *, careful: bool
) -> tuple[list[Fired], int, int, int]:
    window = timedelta(seconds=settings.schedule_window_seconds)
    service = BackupService(db)
    fired: list[Fired] = []
    passed = missed = progress = 0
    with db.transaction() as session:
        query = _due_query(now, batch).with_for_update(of=CONFIGURATIONS, skip_locked=True)
        rows = session.execute(query).all()
        plans = []
        for config_id, project_id, agent_id, schedule, due, agent_enabled in rows:
            try:
                following = next_occurrence(schedule, now)
            except (ScheduleError, KeyError, TypeError, ValueError):
                log.exception("configuration %s has an unreadable schedule", config_id)
                following = None
            plans.append((config_id, project_id, agent_id, as_utc(due), following, agent_enabled))
        if not careful:
            _advance_all(session, [(p[0], p[3], p[4]) for p in plans])
        for config_id, project_id, agent_id, due, following, agent_enabled in plans:
            late = now - due > window
            try:
                with session.begin_nested() if careful else _no_savepoint():
                    if careful and not _advance(session, config_id, due, following):
                        continue  # another scheduler, or an edit of the configuration, won
                    backup = None
                    if agent_enabled:
                        backup = service.record_start(  # the B1 path, as the configuration's agent
                            session, project_id, config_id, S.START_SCHEDULED, agent_id
                        )
                        if late:
                            row = _by_id(session, backup.id)  # a mapped row to update
                            BACKUP_RUNS.move(session, row, S.MISSED, request_id=backup.request_id)
            except DomainError as exc:
                if not careful:
                    raise _Retry from exc
                # Deleted or disabled between the query and the insert: the next tick decides.
                log.info("configuration %s did not fire: %s", config_id, exc.message)
                continue
            progress += 1
            if backup is None:
                passed += 1
            elif late:
                missed += 1
            else:
                fired.append(Fired(backup.id, agent_id, (clock() - due).total_seconds()))
    return fired, passed, missed, len(rows) if progress else 0


@contextmanager
def _no_savepoint() -> Iterator[None]:
    yield


def _advance_all(session: Session, moves: list[tuple[str, datetime, datetime | None]]) -> None:
    """One compare-and-set statement (executemany) for rows this transaction has locked."""
    if not moves:
        return
    c = CONFIGURATIONS.c
    session.execute(
        sa.update(CONFIGURATIONS)
        .where(c.id == sa.bindparam("b_id"), c.next_scheduled_time == sa.bindparam("b_due"))
        .values(next_scheduled_time=sa.bindparam("b_next")),
        [{"b_id": cid, "b_due": due, "b_next": following} for cid, due, following in moves],
    )


def _by_id(session: Session, backup_id: str) -> Backup:
    return session.execute(sa.select(Backup).where(BACKUPS.c.id == backup_id)).scalar_one()


def _advance(session: Session, config_id: str, due: datetime, following: datetime | None) -> bool:
    """Compare-and-set: move the next run time from ``due`` to ``following``."""
    c = CONFIGURATIONS.c
    result = session.execute(
        sa.update(CONFIGURATIONS)
        .where(c.id == config_id, c.next_scheduled_time == due)
        .values(next_scheduled_time=following)
    )
    return bool(rowcount(result))


def expire_waiting(db: Database, settings: Settings, now: datetime, limit: int = 500) -> int:
    """Scheduled runs no worker started within the window end ``missed`` (spec b10)."""
    before = now - timedelta(seconds=settings.schedule_window_seconds)
    expired = 0
    with db.transaction() as session:
        rows = (
            session.execute(
                sa.select(Backup)
                .where(
                    BACKUPS.c.state == S.START_SCHEDULED.value,
                    BACKUPS.c.heartbeat_at.is_(None),
                    BACKUPS.c.created_at < before,
                )
                .order_by(BACKUPS.c.seq)
                .limit(limit)
            )
            .scalars()
            .all()
        )
        for backup in rows:
            if BACKUP_RUNS.move(session, backup, S.MISSED, request_id=backup.request_id):
                expired += 1
    return expired


def schedule_lag(db: Database, now: datetime | None = None) -> float:
    """Seconds the most overdue active schedule has been due without firing (0 = on time)."""
    now = now or utcnow()
    c = CONFIGURATIONS.c
    with db.transaction() as session:
        oldest = session.execute(
            sa.select(sa.func.min(c.next_scheduled_time))
            .join_from(CONFIGURATIONS, AGENTS, AGENTS.c.id == c.agent_id)
            .where(*_due(now))
        ).scalar_one()
    return 0.0 if oldest is None else max(0.0, (now - as_utc(oldest)).total_seconds())
