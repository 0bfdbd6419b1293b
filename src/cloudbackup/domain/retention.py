"""Retention enforced on its own (OQ-40): beat runs :func:`enforce_retention` every
``CLOUDBACKUP_RETENTION_INTERVAL_SECONDS``.

A backup expires ``retention.days`` after its ``ended_time``; ``0`` keeps it forever. For every
agent with an expired backup still restorable, the pass starts a cleanup of the agent's vault
through the ordinary cleanup machinery (``start_scheduled`` as the agent, so the cleanup has its
events, counters, lock and limits, and runs beside backups): the cleanup makes the backup
non-restorable, forgets its snapshot and prunes what no snapshot needs. An agent whose vault
already has a cleanup running is left for the next pass; a disabled agent's scheduled work does
not run, retention included.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cloudbackup.domain.cleanups import CleanupService
from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.domain.errors import DomainError
from cloudbackup.store.db import Database
from cloudbackup.store.retention import oldest_kept
from cloudbackup.store.tables import utcnow

log = logging.getLogger("cloudbackup.retention")


@dataclass(slots=True)
class RetentionReport:
    started: list[str] = field(default_factory=list)  # the cleanups started
    busy: int = 0  # agents left for the next pass (a cleanup of their vault is not final)


def expired_agents(db: Database, now: datetime) -> list[tuple[str, str]]:
    """(project id, agent id) of every agent with a restorable backup past its retention."""
    with db.transaction() as session:
        kept = oldest_kept(session)
    due = {
        (row.project_id, row.agent_id)
        for row in kept
        if row.oldest_ended + timedelta(days=row.retention_days) <= now
    }
    return sorted(due)


def enforce_retention(
    db: Database, dispatcher: Dispatcher | None, now: datetime | None = None
) -> RetentionReport:
    """Start a cleanup for each agent with an expired backup; what was started."""
    now = now or utcnow()
    report = RetentionReport()
    cleanups = CleanupService(db, dispatcher)
    for project_id, agent_id in expired_agents(db, now):
        try:
            cleanup = cleanups.start(project_id, agent_id, "start_scheduled", agent_id)
        except DomainError as exc:  # an active cleanup (or the agent went away meanwhile)
            log.info("retention of agent %s waits for the next pass: %s", agent_id, exc)
            report.busy += 1
            continue
        report.started.append(cleanup.id)
    if report.started:
        log.info("retention started %d cleanups", len(report.started))
    return report
