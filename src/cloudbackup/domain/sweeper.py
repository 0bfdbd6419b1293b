"""The sweeper: nothing recorded is ever left without an executor.

Runs periodically (Celery beat), the same way for every kind of run: it re-publishes runs that
no executor has claimed (the publish after the commit failed, or the broker lost the message),
backing off so that a long queue is not flooded with duplicates; runs whose heartbeat went stale
(their executor died), for the claim (``run_protocol.claim_run``) to take over or fail; and runs
handed back by an executor that shut down whose requeue was lost too. The same sweep re-publishes
unanswered browse requests and forgets expired idempotency keys, events (spec §10: events
are transient) and finished webhook deliveries. (Due webhook deliveries have a quicker sweep of
their own: ``webhook_deliveries.republish_due``.)"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cloudbackup.domain.backups import BACKUP_RUNS
from cloudbackup.domain.browse import BrowseSweepReport, sweep_browse
from cloudbackup.domain.cleanups import CLEANUP_RUNS
from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.domain.drills import DRILL_RUNS
from cloudbackup.domain.event_stream import purge_expired_events
from cloudbackup.domain.logfiles import republish_requested
from cloudbackup.domain.restores import RESTORE_RUNS
from cloudbackup.domain.run_states import StateMachine, StateT
from cloudbackup.domain.runs import ErrorT, RunKind, RunT
from cloudbackup.domain.webhook_deliveries import purge_deliveries
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import IdempotencyRepository
from cloudbackup.store.tables import as_utc, utcnow

log = logging.getLogger("cloudbackup.sweeper")


@dataclass(frozen=True, slots=True)
class RunSweep:
    """What one sweep re-published of one kind of run."""

    republished: int = 0  # never claimed
    redriven: int = 0  # their executor died
    handed_back: int = 0  # their executor shut down, and its requeue was lost


@dataclass(frozen=True, slots=True)
class SweepReport:
    backups: RunSweep
    restores: RunSweep
    cleanups: RunSweep
    browse: BrowseSweepReport
    idempotency_keys_purged: int = 0
    events_purged: int = 0
    logfiles_republished: int = 0
    webhook_deliveries_purged: int = 0
    drills: RunSweep = RunSweep()

    @property
    def runs(self) -> tuple[RunSweep, ...]:
        return (self.backups, self.restores, self.cleanups, self.drills)

    @property
    def republished(self) -> int:
        return sum(kind.republished for kind in self.runs)

    @property
    def redriven(self) -> int:
        return sum(kind.redriven for kind in self.runs)

    @property
    def handed_back(self) -> int:
        return sum(kind.handed_back for kind in self.runs)


def sweep(
    db: Database, dispatcher: Dispatcher, settings: Settings, now: datetime | None = None
) -> SweepReport:
    """One sweep of every kind of run."""
    now = now or utcnow()
    with db.transaction() as session:
        purged = IdempotencyRepository(session).purge(
            now - timedelta(seconds=settings.idempotency_ttl_seconds)
        )
    return SweepReport(
        backups=sweep_runs(BACKUP_RUNS, db, dispatcher, settings, now),
        restores=sweep_runs(RESTORE_RUNS, db, dispatcher, settings, now),
        cleanups=sweep_runs(CLEANUP_RUNS, db, dispatcher, settings, now),
        browse=sweep_browse(db, dispatcher, settings, now),
        idempotency_keys_purged=purged,
        events_purged=purge_expired_events(
            db, timedelta(hours=settings.event_retention_hours), now
        ),
        logfiles_republished=republish_requested(
            db, dispatcher, timedelta(seconds=settings.sweep_after_seconds), now
        ),
        webhook_deliveries_purged=purge_deliveries(
            db, timedelta(days=settings.webhook_delivery_retention_days), now
        ),
        drills=sweep_runs(DRILL_RUNS, db, dispatcher, settings, now),
    )


def sweep_runs(
    kind: RunKind[RunT, ErrorT, StateT],
    db: Database,
    dispatcher: Dispatcher,
    settings: Settings,
    now: datetime | None = None,
) -> RunSweep:
    """Re-publish runs no executor has claimed (backing off 30 s, 30 s, 60 s, ...), those
    whose executor died (stale heartbeat) and those handed back and not taken over since."""
    now = now or utcnow()
    wait = timedelta(seconds=settings.sweep_after_seconds)
    machine: StateMachine[StateT] = kind.machine
    stop = machine.stop_requested
    # Read everything before anything is published: a run published now is not counted twice.
    with db.transaction() as session:
        repo = kind.repository(session)
        waiting = repo.waiting_starts([*machine.starts, stop], now - wait)
        stale = repo.stale_runs(
            now - timedelta(seconds=settings.heartbeat_timeout_seconds), [*machine.running, stop]
        )
        released = repo.handed_back(now - wait, machine.running)
    due = [
        (run_id, agent_id)
        for run_id, agent_id, created, published in waiting
        if published is None
        or now - as_utc(published) >= max(wait, as_utc(published) - as_utc(created))
    ]
    published = _publish(kind, dispatcher, due)
    if published:
        with db.transaction() as session:
            kind.repository(session).mark_published(published)
        log.info("re-published %d %ss waiting for an executor", len(published), kind.name)
    redriven = _publish(kind, dispatcher, stale)
    if redriven:
        log.warning("re-drove %d %ss whose executor stopped responding", len(redriven), kind.name)
    requeued = _publish(kind, dispatcher, released)
    if requeued:
        log.warning("re-published %d %ss handed back by executors", len(requeued), kind.name)
    return RunSweep(len(published), len(redriven), len(requeued))


def _publish(
    kind: RunKind[RunT, ErrorT, StateT], dispatcher: Dispatcher, runs: Sequence[tuple[str, str]]
) -> list[str]:
    """The ids of ``runs`` (id, agent) the dispatcher took."""
    return [
        run_id
        for run_id, agent_id in runs
        if dispatcher.publish(kind.name, run_id, agent_id=agent_id)
    ]
