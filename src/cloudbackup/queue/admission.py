"""The worker-side gate around one delivered backup: its agent's own queue, then admission."""

from __future__ import annotations

import logging
from collections.abc import Callable

from cloudbackup import logs
from cloudbackup.domain import scheduler
from cloudbackup.queue.publishing import CeleryDispatcher
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database

log = logging.getLogger("cloudbackup.queue")

# -- the worker side: route check and admission around one run ------------------------------


def run_gated(
    db: Database,
    settings: Settings,
    dispatcher: CeleryDispatcher,
    backup_id: str,
    *,
    delivered_to: str | None,
    agent_hint: str | None,
    execute: Callable[[Database, Settings, str], str],
) -> str:
    """Run one delivered backup if its queue, agent and project limits allow it.

    Returns the run's outcome, ``forwarded`` (its agent has its own queue now, so it was moved
    there), or ``waiting`` (held back by a pause or a limit; released runs hand it on).
    """
    names = dispatcher.names
    queue = delivered_to or names.manual
    if (
        agent_hint is not None
        and names.agent_of(queue) is None
        and dispatcher.pins is not None
        and agent_hint in dispatcher.pins
    ):
        target = names.agent(agent_hint, names.lane_of(queue))
        if dispatcher.publish_to(target, "backup", backup_id, agent_hint):
            log.info("backup %s moved to its agent's queue %s", backup_id, target)
            return "forwarded"
    admission = scheduler.admit(db, settings, backup_id, queue)
    logs.bind(project_id=admission.project_id, agent_id=admission.agent_id)
    if not admission.run:
        return "waiting"
    outcome = "failed"
    try:
        outcome = execute(db, settings, backup_id)
    finally:
        if outcome != "busy":
            for waiting in scheduler.release(db, backup_id):
                dispatcher.publish_to(waiting.queue, "backup", waiting.backup_id, waiting.agent_id)
    return outcome
