"""The sweeper: nothing recorded is ever left without a worker.

Runs periodically (Celery beat). It re-publishes backups that no worker has claimed (the publish
after the commit failed, or the broker lost the message), backing off so that a long queue is not
flooded with duplicates, and re-publishes runs whose heartbeat went stale (their worker died);
the claim in ``backup_run`` decides whether to take such a run over or to fail it. Runs handed
back by a worker that shut down are requeued by that worker; if that message is lost too, the
sweeper re-publishes them after ``sweep_after_seconds``. It also forgets expired idempotency keys.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.domain.states import RUNNING_STATES, START_STATES, BackupState
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import BackupRepository, IdempotencyRepository
from cloudbackup.store.tables import BACKUPS, as_utc, utcnow

log = logging.getLogger("cloudbackup.sweeper")


@dataclass(frozen=True, slots=True)
class SweepReport:
    republished: int
    redriven: int
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
    with db.transaction() as session:
        repo = BackupRepository(session)
        waiting = repo.waiting_starts([*START_STATES, BackupState.STOP_REQUESTED], now - wait)
        stale = repo.stale_runs(
            now - timedelta(seconds=settings.heartbeat_timeout_seconds),
            [*RUNNING_STATES, BackupState.STOP_REQUESTED],
        )
        released = handed_back_runs(session, now - wait)
        purged = IdempotencyRepository(session).purge(
            now - timedelta(seconds=settings.idempotency_ttl_seconds)
        )
    # Back off: the n-th re-publish waits as long as the row had already waited (30 s, 30 s, 60 s,
    # 120 s, ...), so a deep but healthy queue sees few duplicates.
    due = [
        (backup_id, agent_id)
        for backup_id, agent_id, created, published in waiting
        if published is None
        or now - as_utc(published) >= max(wait, as_utc(published) - as_utc(created))
    ]
    published = [
        backup_id
        for backup_id, agent_id in due
        if dispatcher.publish("backup", backup_id, agent_id=agent_id)
    ]
    if published:
        with db.transaction() as session:
            BackupRepository(session).mark_published(published)
        log.info("re-published %d backups waiting for a worker", len(published))
    redriven = [
        backup_id
        for backup_id, agent_id in stale
        if dispatcher.publish("backup", backup_id, agent_id=agent_id)
    ]
    if redriven:
        log.warning("re-drove %d backups whose worker stopped responding", len(redriven))
    requeued = [
        backup_id
        for backup_id, agent_id in released
        if dispatcher.publish("backup", backup_id, agent_id=agent_id)
    ]
    if requeued:
        log.warning("re-published %d backups handed back by workers that shut down", len(requeued))
    return SweepReport(
        republished=len(published),
        redriven=len(redriven),
        handed_back=len(requeued),
        idempotency_keys_purged=purged,
    )
