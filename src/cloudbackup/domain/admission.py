"""The admission gate: whether a delivered backup may run now, and who runs when it ends.

Before a worker runs a backup it asks :func:`admit`: a paused queue, a queue at its concurrency,
or an agent or project at its limit of running backups makes the run wait. A waiting run keeps
its ``start_*`` state and a ``waiting`` row in ``run_slots`` (so it is visible and never lost);
:func:`release` hands the freed capacity to the oldest waiting runs, and every schedule tick
re-offers waiting runs as a safety net. :func:`run_gated` is the whole gate around one run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from cloudbackup import logs
from cloudbackup.domain.dispatch import QueueRouter
from cloudbackup.domain.run_protocol import Outcome
from cloudbackup.domain.run_states import BACKUP_MACHINE
from cloudbackup.settings import Settings
from cloudbackup.store import run_slots
from cloudbackup.store.db import Database
from cloudbackup.store.queue_settings import queue_setting
from cloudbackup.store.run_slots import Waiting

__all__ = [
    "Admission",
    "Waiting",
    "admit",
    "forget_finished_slots",
    "release",
    "run_gated",
    "waiting_in",
    "waiting_to_reoffer",
]

log = logging.getLogger("cloudbackup.scheduler")

_FINAL = [s.value for s in BACKUP_MACHINE.final]
_START = [s.value for s in BACKUP_MACHINE.starts]


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a delivery may run now; ``reason`` says why it waits."""

    run: bool
    reason: str = ""
    project_id: str | None = None
    agent_id: str | None = None


def run_gated(
    db: Database,
    settings: Settings,
    router: QueueRouter,
    backup_id: str,
    *,
    delivered_to: str | None,
    agent_hint: str | None,
    execute: Callable[[Database, Settings, str], Outcome],
) -> Outcome:
    """Run one delivered backup if its queue, agent and project limits allow it.

    Returns the run's outcome, ``forwarded`` (its agent has its own queue now, so it was moved
    there), or ``waiting`` (held back by a pause or a limit; released runs hand it on).
    """
    queue = router.delivery_queue(delivered_to)
    target = router.own_queue(queue, agent_hint)
    if target is not None and router.publish_to(target, "backup", backup_id, agent_hint):
        log.info("backup %s moved to its agent's queue %s", backup_id, target)
        return Outcome.FORWARDED
    admission = admit(db, settings, backup_id, queue)
    logs.bind(project_id=admission.project_id, agent_id=admission.agent_id)
    if not admission.run:
        return Outcome.WAITING
    outcome = Outcome.FAILED
    try:
        outcome = execute(db, settings, backup_id)
    finally:
        if outcome is not Outcome.BUSY:
            for waiting in release(db, backup_id):
                router.publish_to(waiting.queue, "backup", waiting.backup_id, waiting.agent_id)
    return outcome


def admit(db: Database, settings: Settings, backup_id: str, queue: str) -> Admission:
    """Reserve a running slot for a backup about to start, or record why it must wait.

    Only runs that have not started are gated: a re-drive or a duplicate delivery of a started run
    passes (its slot is already held) and the claim in ``backup_run`` sorts it out.
    """
    with db.transaction() as session:
        backup = run_slots.gated_backup(session, backup_id)
        if backup is None:
            return Admission(run=True)
        project_id, agent_id = backup.project_id, backup.agent_id
        if backup.state not in _START:
            return Admission(run=True, project_id=project_id, agent_id=agent_id)
        run_slots.lock_admissions(session, f"queue:{queue}", f"project:{project_id}")
        reason = _blocked(session, settings, backup_id, queue, project_id, agent_id)
        run_slots.put_slot(session, backup_id, project_id, agent_id, queue, reason)
    if reason:
        log.info("backup %s waits: %s", backup_id, reason)
    return Admission(not reason, reason, project_id, agent_id)


def _blocked(
    session: Session,
    settings: Settings,
    backup_id: str,
    queue: str,
    project_id: str,
    agent_id: str,
) -> str:
    """Why the backup must wait ("" when it may run)."""
    setting = queue_setting(session, queue)
    if setting is not None:
        if setting.paused:
            return f"queue {queue} is paused"
        limit = setting.concurrency
        if limit is not None and _running(session, backup_id, queue=queue) >= limit:
            return f"queue {queue} already runs its limit of {limit}"
    per_agent = settings.max_running_per_agent
    if per_agent > 0 and _running(session, backup_id, agent_id=agent_id) >= per_agent:
        return f"agent {agent_id} already runs its limit of {per_agent}"
    per_project = settings.max_running_per_project
    if per_project > 0 and _running(session, backup_id, project_id=project_id) >= per_project:
        return f"project {project_id} already runs its limit of {per_project}"
    return ""


def _running(session: Session, backup_id: str, **where: str) -> int:
    return run_slots.count_running(session, backup_id, _FINAL, **where)


def release(db: Database, backup_id: str, limit: int = 4) -> list[Waiting]:
    """Give up the slot of a backup that is final; return the oldest runs waiting for it."""
    with db.transaction() as session:
        slot = run_slots.take_slot(session, backup_id, _FINAL)
        if slot is None:
            return []
        project_id, agent_id, queue = slot
        return run_slots.waiting_runs(
            session, _START, limit, agent_id=agent_id, project_id=project_id, queue=queue
        )


def waiting_in(db: Database, queue: str, limit: int = 1000) -> list[Waiting]:
    """Runs waiting in ``queue`` (to publish again when it is resumed or widened)."""
    with db.transaction() as session:
        return run_slots.waiting_runs(session, _START, limit, queue=queue)


def waiting_to_reoffer(db: Database, limit: int = 100) -> list[tuple[str, str]]:
    """The oldest waiting run of each agent: offered again in case a hand-off was lost."""
    with db.transaction() as session:
        rows = run_slots.waiting_runs(session, _START, limit * 10)
    seen: set[str] = set()
    result: list[tuple[str, str]] = []
    for row in rows:
        if row.agent_id not in seen and len(result) < limit:
            seen.add(row.agent_id)
            result.append((row.backup_id, row.agent_id))
    return result


def forget_finished_slots(db: Database) -> int:
    """Delete slots whose backup is final or gone (a worker died before releasing it)."""
    return run_slots.forget_finished_slots(db, _FINAL)
