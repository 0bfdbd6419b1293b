"""The sweeper: nothing recorded is ever left without a worker.

Runs periodically (Celery beat). It re-publishes backups that no worker has claimed (the publish
after the commit failed, or the broker lost the message), backing off so that a long queue is not
flooded with duplicates, and re-publishes runs whose heartbeat went stale (their worker died);
the claim in ``backup_run`` decides whether to take such a run over or to fail it. That part is
:func:`run_worker.sweep_runs`, as for restores and cleanups. Only backups are handed back by a
worker that shuts down and requeued by that worker; if that message is lost too, the sweeper
re-publishes them after ``sweep_after_seconds``. It also forgets expired idempotency keys."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.domain import run_worker
from cloudbackup.domain.backups import BACKUP_RUNS
from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.domain.run_worker import sweep_runs
from cloudbackup.domain.states import RUNNING_STATES
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import IdempotencyRepository
from cloudbackup.store.tables import BACKUPS, utcnow

log = logging.getLogger("cloudbackup.sweeper")


@dataclass(frozen=True, slots=True)
class SweepReport(run_worker.SweepReport):
    """What :func:`sweep_runs` did for backups, plus what only the backup sweep does."""

    handed_back: int = 0
    idempotency_keys_purged: int = 0


def handed_back_runs(session: Session, older_than: datetime) -> Sequence[tuple[str, str]]:
    """(id, agent_id) of running backups whose worker gave them back (heartbeat cleared) and
    that nobody took over since ``older_than``."""
    rows = session.execute(
        sa.select(BACKUPS.c.id, BACKUPS.c.agent_id)
        .where(
            BACKUPS.c.state.in_([str(s) for s in RUNNING_STATES]),
            BACKUPS.c.heartbeat_at.is_(None),
            BACKUPS.c.updated_at < older_than,
        )
        .order_by(BACKUPS.c.seq)
        .limit(500)
    )
    return [(r[0], r[1]) for r in rows]


def sweep(
    db: Database, dispatcher: Dispatcher, settings: Settings, now: datetime | None = None
) -> SweepReport:
    now = now or utcnow()
    wait = timedelta(seconds=settings.sweep_after_seconds)
    # Read (and purge) before anything is published, as the shared sweep does for its runs.
    with db.transaction() as session:
        released = handed_back_runs(session, now - wait)
        purged = IdempotencyRepository(session).purge(
            now - timedelta(seconds=settings.idempotency_ttl_seconds)
        )
    swept = sweep_runs(BACKUP_RUNS, db, dispatcher, settings, now)
    requeued = [
        backup_id
        for backup_id, agent_id in released
        if dispatcher.publish("backup", backup_id, agent_id=agent_id)
    ]
    if requeued:
        log.warning("re-published %d backups handed back by workers that shut down", len(requeued))
    return SweepReport(
        republished=swept.republished,
        redriven=swept.redriven,
        handed_back=len(requeued),
        idempotency_keys_purged=purged,
    )
