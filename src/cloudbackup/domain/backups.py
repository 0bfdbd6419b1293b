"""Backups: the start (B1), and what only a backup adds to the run every kind shares
(``domain.runs``): its reads filter, it records a snapshot, and a run that ends says whether it
can be restored. Read (B2/B3), update (B4), errors (ER1) and events (EV5) are the shared ones.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.domain.agents import storable
from cloudbackup.domain.dispatch import AsyncDispatcher, Dispatcher
from cloudbackup.domain.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from cloudbackup.domain.events import record_backup_event
from cloudbackup.domain.run_states import BACKUP_MACHINE, RESTORABLE_STATES, BackupState
from cloudbackup.domain.runs import FileErrorItem, RunKind, RunService, RunUpdate
from cloudbackup.engine.location import vault_storage
from cloudbackup.engine.vault import snapshot_stored
from cloudbackup.settings import Settings
from cloudbackup.store.backup_starts import BackupStartStore, NewRun, StartConflict, StartFlags
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import (
    BackupRepository,
    ConfigurationRepository,
    StartContext,
)
from cloudbackup.store.tables import (
    Backup,
    BackupError,
    utcnow,
)

BACKUP_DIAGNOSTICS = "Some files could not be backed up. Partial list follows."
BACKUP_ERROR_REASON = "unable_to_process_some_files"
ACTIVE_MESSAGE = (
    "A backup of this configuration is already in progress; wait for it to finish or stop it first."
)


@dataclass(slots=True)
class ErrorItem(FileErrorItem):
    """One per-file error of a backup, restore or drill as an agent reports it (spec §2.3,
    without ``description``): with its ``exception``, each part stored in a column."""

    exception_code: int | None = None
    exception_description: str | None = None
    exception_details: str | None = None


@dataclass(slots=True)
class ErrorReport:
    count: int
    reason: str
    diagnostics: str
    items: list[ErrorItem] = field(default_factory=list)


@dataclass(slots=True)
class BackupUpdate(RunUpdate[BackupState, ErrorReport]):
    """What a PATCH (or a worker) reports about a backup; unlike other runs, its snapshot."""

    snapshot_id: int | None = None

    def column_values(self) -> dict[str, Any]:
        # Named, not `super()`: a slots dataclass is a new class the zero-argument form misses.
        values = RunUpdate.column_values(self)
        if self.snapshot_id is not None:
            values["snapshot_id"] = self.snapshot_id
        return values


class BackupEnding:
    """A backup that ends records whether it can be restored (a completed run with a
    snapshot); a restorable one becomes its configuration's last completed."""

    def values(self, backup: Backup, target: str, values: dict[str, Any]) -> dict[str, Any]:
        snapshot = values.get("snapshot_id", backup.snapshot_id)
        restorable = target in RESTORABLE_STATES and snapshot is not None
        return {**values, "restorable": restorable}

    def after(self, session: Session, backup: Backup, target: str) -> None:
        if backup.restorable:
            ConfigurationRepository(session).set_last_completed(backup.configuration_id, backup.id)


BACKUP_RUNS: RunKind[Backup, BackupError, BackupState] = RunKind(
    machine=BACKUP_MACHINE,
    repository=BackupRepository,
    record_event=record_backup_event,
    final_values={"active_manual_lock": None},  # a final state frees the manual-start lock
    ending=BackupEnding(),
)


# The widest ids the tables hold (varchar columns): a longer one names nothing.
ID_LENGTH = 36
PROJECT_ID_LENGTH = 64


def check_start_ids(project_id: str, configuration_id: str) -> None:
    """404 for ids no row can have, before they reach the database (PostgreSQL would refuse
    to compare or insert them: a 500 the fuzzer found on B1's one-statement path)."""
    if (
        len(configuration_id) > ID_LENGTH
        or len(project_id) > PROJECT_ID_LENGTH
        or not (storable(configuration_id) and storable(project_id))
    ):
        raise NotFound("Configuration not found.")


def parse_start_state(state_value: str, agent_header: str | None) -> BackupState:
    """The state a B1 body asks for, if a start may ask for it (400 otherwise)."""
    state = BACKUP_MACHINE.parse(state_value)
    if state not in BACKUP_MACHINE.starts:
        raise InvalidInput(
            "Validation failed.",
            [f"state must be 'start_requested' or 'start_scheduled', not {state_value!r}."],
        )
    if state is BackupState.START_SCHEDULED and not agent_header:
        raise InvalidInput(
            "Validation failed.",
            ["The X-Agent-Id header is required when state is start_scheduled."],
        )
    return state


def check_start(
    state: BackupState, agent_header: str | None, config: StartContext | None
) -> StartContext:
    """The configuration, if it may start a run in ``state`` now (404/403/409 otherwise).

    The one place of B1's rules: the sync path calls it, and the API's path runs its truth
    table (:func:`admitted_contexts`) inside the insert statement, then calls it too."""
    if config is None:
        raise NotFound("Configuration not found.")
    scheduled = state is BackupState.START_SCHEDULED
    if scheduled and agent_header != config.agent_id:
        raise Forbidden("X-Agent-Id is not the agent of this configuration.")
    if config.deleted:
        raise Conflict("The configuration has been deleted; backups of it cannot be started.")
    if scheduled and not (config.enabled and config.agent_enabled):
        raise Conflict("The configuration or its agent is disabled; scheduled backups do not run.")
    if not scheduled and config.has_active_run:
        raise Conflict(ACTIVE_MESSAGE)
    return config


@lru_cache(maxsize=len(BACKUP_MACHINE.starts))
def admitted_contexts(state: BackupState) -> frozenset[StartFlags]:
    """Every start context :func:`check_start` admits for ``state``, as the
    (deleted, enabled, agent_enabled, has_active_run, header_is_agent) flags a database can
    test: the rules, handed to a single insert statement without being written twice."""
    admitted: set[StartFlags] = set()
    for flags in itertools.product((False, True), repeat=5):
        deleted, enabled, agent_enabled, has_active_run, header_is_agent = flags
        config = StartContext("agent", deleted, enabled, "vault", agent_enabled, has_active_run)
        try:
            check_start(state, "agent" if header_is_agent else "other", config)
        except DomainError:
            continue
        admitted.add(StartFlags(*flags))
    return frozenset(admitted)


def new_run(
    project_id: str,
    configuration_id: str,
    state: BackupState,
    agent_header: str | None,
) -> NewRun:
    """The parts of a new run known before its configuration is read."""
    scheduled = state is BackupState.START_SCHEDULED
    return NewRun(
        id=str(uuid.uuid4()),
        project_id=project_id,
        configuration_id=configuration_id,
        state=state.value,
        request_id=str(uuid.uuid4()),
        active_manual_lock=None if scheduled else configuration_id,
        now=utcnow(),
        agent_header=agent_header,
        event=BACKUP_MACHINE.events[state],
    )


class BackupStarter:
    """B1 on asyncio, the API's hot path: one statement reads the configuration and, if the
    rules admit it, inserts the run and its event; then the publish (after the commit)."""

    def __init__(self, store: BackupStartStore, dispatcher: AsyncDispatcher | None) -> None:
        self.store = store
        self.dispatcher = dispatcher
        sa.orm.configure_mappers()  # `model_construct` needs the mapped attributes in place

    async def start(
        self, project_id: str, configuration_id: str, state_value: str, agent_header: str | None
    ) -> Backup:
        state = parse_start_state(state_value, agent_header)
        check_start_ids(project_id, configuration_id)
        run = new_run(project_id, configuration_id, state, agent_header)
        try:
            context, inserted, deliveries = await self.store.start(
                run, active_states=BACKUP_MACHINE.active, admitted=admitted_contexts(state)
            )
        except StartConflict as exc:
            raise Conflict(ACTIVE_MESSAGE) from exc  # a concurrent start won the manual lock
        config = check_start(state, agent_header, context)  # the refusal, if it was one
        if not inserted:  # the statement applied the same rules to the same row
            raise RuntimeError(f"start of {configuration_id} admitted but not inserted")
        # No validation, no ORM state: a tenth of the CPU of `Backup(**values)`.
        backup = Backup.model_construct(**run.row(config.agent_id, config.vault_id))
        if self.dispatcher is not None:
            await self.dispatcher.publish("backup", backup.id, agent_id=backup.agent_id)
            for delivery_id in deliveries:  # the start event's webhooks (store.webhook_log)
                await self.dispatcher.publish("webhook", str(delivery_id))
        return backup


def stored_snapshots(settings: Settings) -> Callable[[str, int], bool]:
    """Whether vault ``vault_id`` holds snapshot ``n``, read from its storage's names."""
    return lambda vault_id, n: snapshot_stored(vault_storage(settings, vault_id), n)


class BackupService(RunService[Backup, BackupError, BackupState]):
    """Use cases of the backups resource, for the API (and the CLI): the start here, the
    rest shared with every run."""

    kind = BACKUP_RUNS

    def __init__(
        self,
        db: Database,
        dispatcher: Dispatcher | None = None,
        snapshot_stored: Callable[[str, int], bool] | None = None,
    ) -> None:
        super().__init__(db, dispatcher)
        # Whether a vault holds a snapshot (``engine.snapshot_stored`` on the vault's storage):
        # a reported snapshot must exist there. None where nothing reports (the scheduler).
        self.snapshot_stored = snapshot_stored

    def check_report(
        self, session: Session, run: Backup, update: RunUpdate[BackupState, Any]
    ) -> None:
        """A reported snapshot must be this backup's own: one another backup of the vault
        recorded is refused (a forged report must not make a kept snapshot look expirable)."""
        snapshot_id = getattr(update, "snapshot_id", None)
        if snapshot_id is None:
            return
        owner = BackupRepository(session).snapshot_owner(run.vault_id, snapshot_id)
        if owner is not None and owner != run.id:
            raise Conflict(f"Snapshot {snapshot_id} is another backup's snapshot in this vault.")
        if self.snapshot_stored is not None and not self.snapshot_stored(run.vault_id, snapshot_id):
            raise Conflict(
                f"Snapshot {snapshot_id} is not in this backup's vault: report the id of the "
                "snapshot the backup stored, once its manifest is written."
            )

    # -- B1 ---------------------------------------------------------------------------------
    def start(
        self, project_id: str, configuration_id: str, state_value: str, agent_header: str | None
    ) -> Backup:
        """Record a new run (committed) and only then hand it to a worker."""
        state = parse_start_state(state_value, agent_header)
        check_start_ids(project_id, configuration_id)
        return self.record_and_publish(  # the active lock here: active_manual_lock
            lambda session: self.record_start(
                session, project_id, configuration_id, state, agent_header
            ),
            ACTIVE_MESSAGE,
        )

    def record_start(
        self,
        session: Session,
        project_id: str,
        configuration_id: str,
        state: BackupState,
        agent_header: str | None,
    ) -> Backup:
        """Insert a run and its start event in the caller's transaction (B1, and the scheduler
        firing as the configuration's agent); publishing is the caller's job, after the commit."""
        repo = BackupRepository(session)
        context = repo.start_context(project_id, configuration_id, BACKUP_MACHINE.active)
        config = check_start(state, agent_header, context)
        run = new_run(project_id, configuration_id, state, agent_header)
        values = run.row(config.agent_id, config.vault_id)
        repo.insert(values)
        backup = Backup(**values)
        record_backup_event(session, backup, run.event, request_id=backup.request_id)
        return backup
