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

from cloudbackup.domain import cross_agent_restores
from cloudbackup.domain.agent_channel import AgentChannel, is_remote
from cloudbackup.domain.backup_run import BackupRun, claim_backup
from cloudbackup.domain.backups import BACKUP_RUNS
from cloudbackup.domain.cleanup_run import CleanupClaim, CleanupRun, claim_cleanup
from cloudbackup.domain.cleanups import CLEANUP_RUNS
from cloudbackup.domain.restore_run import FAILED_REASON as RESTORE_FAILED
from cloudbackup.domain.restore_run import RestoreRun, claim_restore
from cloudbackup.domain.restores import RESTORE_RUNS
from cloudbackup.domain.run_protocol import Outcome, OwnedRun, RunClaim, execute_run
from cloudbackup.domain.run_states import BackupState, RestoreState, StateT
from cloudbackup.domain.runs import ErrorT, RunKind, RunT
from cloudbackup.engine import checkpoint_times
from cloudbackup.engine.location import vault_storage
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import BackupRepository, ConfigurationRepository
from cloudbackup.store.tables import (
    Agent,
    Backup,
    BackupError,
    Restore,
    RestoreError,
    utcnow,
)

log = logging.getLogger("cloudbackup.run")

NO_CHANNEL = "no event channel is configured to hand the run to its remote agent"
DESTINATION_GONE = "Nothing restored: the destination agent is gone."
NOT_RESTORABLE = "Nothing restored: the backup is no longer restorable (a cleanup expired it)."


def work_item(kind: str, run_id: str, attempt: int, state: str, **what: Any) -> dict[str, Any]:
    """The channel item that hands one claimed run to its agent."""
    return {"type": "run", "kind": kind, "id": run_id, "attempt": attempt, "state": state, **what}


def delegate(
    owned: OwnedRun[Any, Any, Any], channel: AgentChannel, agent_id: str, **what: Any
) -> Outcome:
    """Push the claimed run (and ``what`` the agent needs of it) to its agent's channel; the
    agent's reports carry the run from here."""
    kind, attempt = owned.kind.name, owned.claim.attempt
    item = work_item(kind, owned.run_id, attempt, str(owned.state), **what)
    if not channel.push(agent_id, item):
        # Nobody will report: the heartbeat goes stale and the sweeper re-drives the run.
        log.warning("could not hand %s %s to agent %s", kind, owned.run_id, agent_id)
    else:
        log.info("%s %s (attempt %d) handed to its agent", kind, owned.run_id, attempt)
    return Outcome.DELEGATED


class _Delegated(OwnedRun[RunT, ErrorT, StateT]):
    """A claimed run its remote agent carries out: :meth:`work` hands it to the agent's event
    channel (none configured: the run fails)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        claim: RunClaim[Any, Any, Any],  # the subclass's (mypy cannot bind constrained types here)
        channel: AgentChannel | None,
    ) -> None:
        super().__init__(db, settings, claim)
        self.channel = channel

    def _channel(self) -> AgentChannel:
        if self.channel is None:
            raise RuntimeError(NO_CHANNEL)
        return self.channel


class RemoteBackup(_Delegated[Backup, BackupError, BackupState]):
    """A claimed backup of a remote agent: what to back up goes to the agent's channel; the
    agent's B4 reports carry the run from here."""

    def work(self) -> Outcome:
        backup = self.claim.run
        channel = self._channel()
        with self.db.read() as session:
            config = ConfigurationRepository(session).get(backup.configuration_id)
        assert config is not None  # configurations are soft-deleted, never removed
        return delegate(
            self,
            channel,
            backup.agent_id,
            configuration_id=backup.configuration_id,
            # The agent checkpoints as hosted workers do (it has no server settings of its own).
            checkpoint_seconds=self.settings.backup_checkpoint_seconds,
            inclusions=list(config.inclusions or []),
            exclusions=list(config.exclusions or []),
        )


class RemoteRestore(_Delegated[Restore, RestoreError, RestoreState]):
    """A claimed restore whose destination is a remote agent: the agent reads its own vault
    (or, onto another agent, the source vault, read-only: ``domain.cross_agent_restores``)
    through the API and writes the files on its host."""

    def work(self) -> Outcome:
        restore = self.claim.run
        channel = self._channel()
        refusal: str | None = None
        source: dict[str, Any] = {}
        with self.db.read() as session:
            destination = session.get(Agent, restore.destination_agent_id)
            backup = BackupRepository(session).get(restore.backup_id)
            if backup is None or not backup.restorable or backup.snapshot_id is None:
                refusal = NOT_RESTORABLE
            elif destination is None:
                refusal = DESTINATION_GONE
            elif destination.vault_id != restore.vault_id:  # another agent's vault
                refusal, source = cross_agent_restores.hand_over(session, restore, destination)
        if refusal is not None:
            values = {"errors_reason": RESTORE_FAILED, "errors_diagnostics": refusal}
            return self.finish(RestoreState.FAILED, values)
        return delegate(
            self,
            channel,
            restore.destination_agent_id,
            snapshot_id=restore.snapshot_id,
            destination_path=restore.destination_path,
            overwrite=restore.overwrite_files,
            resume=self.claim.resumed,
            inclusions=list(restore.inclusions or []),
            exclusions=list(restore.exclusions or []),
            **source,
        )


class RemoteCleanup(CleanupRun):
    """A claimed cleanup of a remote agent's vault, whose password only the agent holds: the
    server decides what expires (retention, never a snapshot a restorable backup names, the
    anomaly hold: :meth:`CleanupRun._expire`), and the agent forgets exactly those snapshots,
    prunes and reports through C4. The agent is never asked to choose what to drop.

    Checkpoints are decided the same way as for a hosted vault (their names and times are
    readable without the password): the agent deletes the stale ones it is sent before it
    prunes, and prune keeps what the others list. Snapshots no backup row names (a run that
    died before recording its snapshot) are not collected here: telling their age needs the
    vault's password."""

    def __init__(
        self, db: Database, settings: Settings, claim: CleanupClaim, channel: AgentChannel | None
    ) -> None:
        super().__init__(db, settings, claim)
        self.channel = channel

    def work(self) -> Outcome:
        cleanup = self.claim.run
        if self.channel is None:
            raise RuntimeError(NO_CHANNEL)
        # Re-driven, the backups expired by an earlier attempt are listed again (not yet
        # forgotten on the host as far as the server knows): the same list goes out again.
        now = utcnow()
        forgettable = self._expire(now)
        listed = checkpoint_times(vault_storage(self.settings, cleanup.vault_id))
        return delegate(
            self,
            self.channel,
            cleanup.agent_id,
            forget=sorted(forgettable),
            delete_checkpoints=sorted(self._stale_checkpoints(listed, now)),
            verify_fraction=self.settings.cleanup_verify_fraction,
        )


Executor = Callable[[Database, Settings, str], Outcome]


def _executor(
    kind: RunKind[RunT, ErrorT, StateT],
    claim: Callable[[Database, Settings, str], RunClaim[RunT, ErrorT, StateT] | None],
    hosted: Callable[
        [Database, Settings, RunClaim[RunT, ErrorT, StateT]], OwnedRun[RunT, ErrorT, StateT]
    ],
    remote: Callable[
        [Database, Settings, RunClaim[RunT, ErrorT, StateT], AgentChannel | None],
        OwnedRun[RunT, ErrorT, StateT],
    ],
    channel: AgentChannel | None,
) -> Executor:
    """The worker's ``execute`` of one run of ``kind``: run here by ``hosted``, or, when the
    run's agent (``kind.agent_of``) is remote, handed to its channel by ``remote``."""

    def execute(db: Database, settings: Settings, run_id: str) -> Outcome:
        def runner(claimed: RunClaim[RunT, ErrorT, StateT]) -> OwnedRun[RunT, ErrorT, StateT]:
            if is_remote(db, kind.agent_of(claimed.run)):
                return remote(db, settings, claimed, channel)
            return hosted(db, settings, claimed)

        return execute_run(kind, lambda: claim(db, settings, run_id), runner, settings)

    return execute


def backup_executor(channel: AgentChannel | None) -> Executor:
    """The worker's ``execute`` of one backup: hosted agents' runs run here, remote agents'
    runs are handed to their channel."""
    return _executor(BACKUP_RUNS, claim_backup, BackupRun, RemoteBackup, channel)


def restore_executor(channel: AgentChannel | None) -> Executor:
    """The worker's ``execute`` of one restore: to a remote agent through its channel."""
    return _executor(RESTORE_RUNS, claim_restore, RestoreRun, RemoteRestore, channel)


def cleanup_executor(channel: AgentChannel | None) -> Executor:
    """The worker's ``execute`` of one cleanup (C1 or the retention pass): a remote agent's
    vault is maintained by the agent, through its channel."""
    return _executor(CLEANUP_RUNS, claim_cleanup, CleanupRun, RemoteCleanup, channel)
