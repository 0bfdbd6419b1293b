"""Runs of remote agents: a worker admits and claims them as any other, then hands them to the
agent's event channel instead of running the engine (docs/decisions.md, "Remote agents").

A remote agent is one more executor of the run protocol (``domain.run_protocol``): the claim's
attempt travels in the work item, the agent reports with it through B4 (``X-Run-Attempt``), and
each report writes the heartbeat. An agent that goes silent lets the heartbeat go stale: the
sweeper re-publishes the run, the next claim takes it over with the next attempt and this
module hands it to the channel again, until ``max_attempts`` fail it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cloudbackup.domain.agent_channel import AgentChannel, is_remote
from cloudbackup.domain.backup_run import BackupRun, claim_backup
from cloudbackup.domain.backups import BACKUP_RUNS
from cloudbackup.domain.run_protocol import Outcome, OwnedRun, RunClaim, execute_run
from cloudbackup.domain.run_states import BackupState
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import ConfigurationRepository
from cloudbackup.store.tables import Backup, BackupError

log = logging.getLogger("cloudbackup.run")

NO_CHANNEL = "no event channel is configured to hand the run to its remote agent"


def work_item(kind: str, run_id: str, attempt: int, state: str, **what: Any) -> dict[str, Any]:
    """The channel item that hands one claimed run to its agent."""
    return {"type": "run", "kind": kind, "id": run_id, "attempt": attempt, "state": state, **what}


class RemoteBackup(OwnedRun[Backup, BackupError, BackupState]):
    """A claimed backup of a remote agent: what to back up goes to the agent's channel; the
    agent's B4 reports carry the run from here."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        claim: RunClaim[Backup, BackupError, BackupState],
        channel: AgentChannel | None,
    ) -> None:
        super().__init__(db, settings, claim)
        self.channel = channel

    def work(self) -> Outcome:
        backup = self.claim.run
        if self.channel is None:
            raise RuntimeError(NO_CHANNEL)
        with self.db.read() as session:
            config = ConfigurationRepository(session).get(backup.configuration_id)
        assert config is not None  # configurations are soft-deleted, never removed
        item = work_item(
            "backup",
            backup.id,
            self.claim.attempt,
            str(self.state),
            configuration_id=backup.configuration_id,
            inclusions=list(config.inclusions or []),
            exclusions=list(config.exclusions or []),
        )
        if not self.channel.push(backup.agent_id, item):
            # Nobody will report: the heartbeat goes stale and the sweeper re-drives the run.
            log.warning("could not hand backup %s to agent %s", backup.id, backup.agent_id)
        else:
            log.info("backup %s (attempt %d) handed to its agent", backup.id, self.claim.attempt)
        return Outcome.DELEGATED


def backup_executor(channel: AgentChannel | None) -> Callable[[Database, Settings, str], Outcome]:
    """The worker's ``execute`` of one backup: hosted agents' runs run here, remote agents'
    runs are handed to their channel."""

    def execute(db: Database, settings: Settings, backup_id: str) -> Outcome:
        def runner(
            claim: RunClaim[Backup, BackupError, BackupState],
        ) -> OwnedRun[Backup, BackupError, BackupState]:
            if is_remote(db, claim.run.agent_id):
                return RemoteBackup(db, settings, claim, channel)
            return BackupRun(db, settings, claim)

        return execute_run(
            BACKUP_RUNS, lambda: claim_backup(db, settings, backup_id), runner, settings
        )

    return execute
