"""Backup services: start (B1), read (B2/B3), update (B4), errors (ER1), events (EV5).

Every state change goes through :func:`transition`: the compare-and-set every run shares
(``domain.runs``, with :data:`BACKUP_RUNS`), plus what only a backup records when it ends.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.domain import runs
from cloudbackup.domain.agents import storable
from cloudbackup.domain.dispatch import AsyncDispatcher, Dispatcher
from cloudbackup.domain.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from cloudbackup.domain.events import record_backup_event
from cloudbackup.domain.runs import RunKind, RunUpdate
from cloudbackup.domain.states import (
    ACTIVE_STATES,
    AGENT_SETTABLE,
    EVENTS_WITH_REQUEST_ID,
    FINAL_CONFLICT_MESSAGE,
    FINAL_STATES,
    RESTORABLE_STATES,
    RUNNING_STATES,
    START_STATES,
    STATE_EVENT,
    USER_SETTABLE,
    BackupState,
    parse_state,
    sources_of,
)
from cloudbackup.store.backup_starts import Admission, BackupStartStore, NewRun, StartConflict
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import (
    BackupRepository,
    ConfigurationRepository,
    EventRepository,
    Page,
    SortDir,
    StartContext,
)
from cloudbackup.store.tables import (
    Backup,
    BackupError,
    Event,
    utcnow,
)

BACKUP_DIAGNOSTICS = "Some files could not be backed up. Partial list follows."
BACKUP_ERROR_REASON = "unable_to_process_some_files"
ACTIVE_MESSAGE = (
    "A backup of this configuration is already in progress; wait for it to finish or stop it first."
)


@dataclass(slots=True)
class ErrorItem:
    """One per-file error as an agent reports it (spec §2.3, without ``description``)."""

    index: int
    path: str
    type: str
    exception_code: int | None = None
    exception_description: str | None = None
    exception_details: str | None = None

    def columns(self) -> dict[str, Any]:
        """The columns of its error row (backups and restores store the same ones)."""
        return {
            "index": self.index,
            "path": self.path,
            "type": self.type,
            "exception_code": self.exception_code,
            "exception_description": self.exception_description,
            "exception_details": self.exception_details,
        }


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


def _error_row(backup_id: str, item: ErrorItem) -> BackupError:
    return BackupError(backup_id=backup_id, **item.columns())


BACKUP_RUNS: RunKind[Backup, BackupError, BackupState] = RunKind(
    name="backup",
    repository=BackupRepository,
    states=BackupState,
    start_states=START_STATES,
    running_states=RUNNING_STATES,
    active_states=ACTIVE_STATES,
    final_states=FINAL_STATES,
    agent_settable=AGENT_SETTABLE,
    user_settable=USER_SETTABLE,
    sources_of=sources_of,
    state_event=STATE_EVENT,
    events_with_request_id=EVENTS_WITH_REQUEST_ID,
    record_event=record_backup_event,
    error_row=_error_row,
    agent_of=lambda backup: backup.agent_id,
    not_found="Backup not found.",
    final_conflict=FINAL_CONFLICT_MESSAGE,
    not_the_agent=(
        "Progress and results may only be reported by the backup's agent "
        "(send its id in X-Agent-Id)."
    ),
    final_values={"active_manual_lock": None},  # a final state frees the manual-start lock
)


def transition(
    session: Session,
    backup: Backup,
    target: BackupState,
    values: dict[str, Any] | None = None,
    *,
    request_id: str | None = None,
    event_extra: dict[str, Any] | None = None,
) -> bool:
    """Move ``backup`` to ``target`` if its state machine allows it (:func:`runs.transition`).

    Backups only: a final state also records whether the backup can be restored (a completed
    run with a snapshot), and a restorable one becomes its configuration's last completed.
    """
    values = dict(values or {})
    if target in FINAL_STATES:
        snapshot = values.get("snapshot_id", backup.snapshot_id)
        values["restorable"] = target in RESTORABLE_STATES and snapshot is not None
    if not runs.transition(
        BACKUP_RUNS,
        session,
        backup,
        target,
        values,
        request_id=request_id,
        event_extra=event_extra,
    ):
        return False
    if target in RESTORABLE_STATES and values["restorable"]:
        ConfigurationRepository(session).set_last_completed(backup.configuration_id, backup.id)
    return True


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
    state = parse_state(state_value)
    if state not in START_STATES:
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


@lru_cache(maxsize=len(START_STATES))
def admitted_contexts(state: BackupState) -> frozenset[Admission]:
    """Every start context :func:`check_start` admits for ``state``, as the
    (deleted, enabled, agent_enabled, has_active_run, header_is_agent) flags a database can
    test: the rules, handed to a single insert statement without being written twice."""
    admitted: set[Admission] = set()
    for flags in itertools.product((False, True), repeat=5):
        deleted, enabled, agent_enabled, has_active_run, header_is_agent = flags
        config = StartContext("agent", deleted, enabled, "vault", agent_enabled, has_active_run)
        try:
            check_start(state, "agent" if header_is_agent else "other", config)
        except DomainError:
            continue
        admitted.add(Admission(*flags))
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
        event=STATE_EVENT[state],
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
            context, inserted = await self.store.start(
                run, active_states=ACTIVE_STATES, admitted=admitted_contexts(state)
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
        return backup


class BackupService:
    """Use cases of the backups resource, for the API (and the CLI)."""

    def __init__(self, db: Database, dispatcher: Dispatcher | None = None) -> None:
        self.db = db
        self.dispatcher = dispatcher

    # -- B1 ---------------------------------------------------------------------------------
    def start(
        self, project_id: str, configuration_id: str, state_value: str, agent_header: str | None
    ) -> Backup:
        """Record a new run (committed) and only then hand it to a worker."""
        state = parse_start_state(state_value, agent_header)
        check_start_ids(project_id, configuration_id)
        try:
            with self.db.transaction() as session:
                backup = self.record_start(
                    session, project_id, configuration_id, state, agent_header
                )
        except sa.exc.IntegrityError as exc:
            # The unique active_manual_lock lost a race with a concurrent start.
            raise Conflict(ACTIVE_MESSAGE) from exc
        if self.dispatcher is not None:
            self.dispatcher.publish("backup", backup.id, agent_id=backup.agent_id)
        return backup

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
        context = repo.start_context(project_id, configuration_id, ACTIVE_STATES)
        config = check_start(state, agent_header, context)
        run = new_run(project_id, configuration_id, state, agent_header)
        values = run.row(config.agent_id, config.vault_id)
        repo.insert(values)
        backup = Backup(**values)
        record_backup_event(session, backup, run.event, request_id=backup.request_id)
        return backup

    # -- B2 / B3 ----------------------------------------------------------------------------
    def get(self, project_id: str, backup_id: str) -> Backup:
        with self.db.transaction() as session:
            backup = BackupRepository(session).get(backup_id, project_id)
        if backup is None:
            raise NotFound("Backup not found.")
        return backup

    def page(
        self,
        project_id: str,
        *,
        marker: str | None,
        limit: int,
        sort_dir: SortDir,
        restorable: bool | None,
        configuration_id: str | None,
    ) -> Page[Backup]:
        with self.db.transaction() as session:
            repo = BackupRepository(session)
            marker_seq = None
            if marker is not None:
                marker_seq = repo.seq_of(marker, project_id)
                if marker_seq is None:
                    raise InvalidInput(
                        "Validation failed.",
                        [f"marker {marker!r} is not a backup of this project."],
                    )
            return repo.page(
                project_id,
                marker_seq=marker_seq,
                limit=limit,
                sort_dir=sort_dir,
                restorable=restorable,
                configuration_id=configuration_id,
            )

    # -- ER1 / EV5 --------------------------------------------------------------------------
    def errors(self, project_id: str, backup_id: str) -> tuple[Backup, list[BackupError]]:
        with self.db.transaction() as session:
            repo = BackupRepository(session)
            backup = repo.get(backup_id, project_id)
            if backup is None:
                raise NotFound("Backup not found.")
            return backup, repo.errors(backup_id)

    def events(
        self, project_id: str, backup_id: str, *, marker: int | None, limit: int, sort_dir: SortDir
    ) -> Page[Event]:
        with self.db.transaction() as session:
            if BackupRepository(session).get(backup_id, project_id) is None:
                raise NotFound("Backup not found.")
            return EventRepository(session).page(
                project_id, marker=marker, limit=limit, sort_dir=sort_dir, backup_id=backup_id
            )

    # -- B4 ---------------------------------------------------------------------------------
    def update(
        self, project_id: str, backup_id: str, update: BackupUpdate, agent_header: str | None
    ) -> None:
        """Apply a PATCH atomically: a stop request, agent progress, or an agent's final report."""
        with self.db.transaction() as session:
            repo = BackupRepository(session)
            backup = repo.get(backup_id, project_id)
            if backup is None:
                raise NotFound("Backup not found.")
            if backup.state in FINAL_STATES:
                raise Conflict(FINAL_CONFLICT_MESSAGE)
            agent_fields = update.state in AGENT_SETTABLE or bool(update.column_values())
            if agent_fields and agent_header != backup.agent_id:
                raise Forbidden(
                    "Progress and results may only be reported by the backup's agent "
                    "(send its id in X-Agent-Id)."
                )
            values = update.column_values()
            if update.state is None:
                if not repo.update_where_state(backup.id, ACTIVE_STATES, values):
                    raise Conflict(FINAL_CONFLICT_MESSAGE)
            elif update.state in USER_SETTABLE:
                self._stop(session, backup)
            else:
                if not transition(session, backup, update.state, values):
                    current = repo.state_of(backup.id)
                    if current in FINAL_STATES:
                        raise Conflict(FINAL_CONFLICT_MESSAGE)
                    raise Conflict(
                        f"A backup in state '{current}' cannot move to '{update.state}'."
                    )
            if update.errors is not None:
                repo.replace_errors(
                    backup.id, [_error_row(backup.id, item) for item in update.errors.items]
                )

    def _stop(self, session: Session, backup: Backup) -> None:
        was = backup.state
        if was == BackupState.STOP_REQUESTED:
            return  # a repeated stop request changes nothing
        if not transition(session, backup, BackupState.STOP_REQUESTED):
            state = BackupRepository(session).state_of(backup.id)
            raise Conflict(f"A backup in state '{state}' cannot be stopped.")
        if was in START_STATES:
            # No worker has the run yet, so nobody else would end it (spec OQ-29).
            transition(session, backup, BackupState.STOPPED)
