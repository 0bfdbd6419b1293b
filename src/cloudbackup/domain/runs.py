"""What every run (backup, restore, cleanup) shares on the API side: the state change, reading
runs and their errors and events, and the PATCH that stops them or reports progress.

A :class:`RunKind` names what differs between kinds (table, state machine, events, messages);
``domain.backups``, ``domain.restores`` and ``domain.cleanups`` each define one and add only
their own start (B1, R1, C1). Every state change goes through :meth:`RunKind.move`, a
compare-and-set that asks the kind's state machine whether the move is allowed; the HTTP PATCH
path and the workers (``domain.run_protocol``) share it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.domain.agents import storable
from cloudbackup.domain.dispatch import Dispatcher, JobKind
from cloudbackup.domain.errors import Conflict, Forbidden, NotFound
from cloudbackup.domain.project_pages import ProjectPages
from cloudbackup.domain.run_states import StateMachine, StateT
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import Page, RunRepository, SortDir
from cloudbackup.store.tables import (
    Backup,
    BackupError,
    Cleanup,
    CleanupError,
    Drill,
    DrillError,
    Event,
    Restore,
    RestoreError,
    utcnow,
)

RunT = TypeVar("RunT", Backup, Restore, Cleanup, Drill)
ErrorT = TypeVar("ErrorT", BackupError, RestoreError, CleanupError, DrillError)
_RunT_contra = TypeVar("_RunT_contra", contravariant=True)


class RecordEvent(Protocol[_RunT_contra]):
    """Appends one event about a run (``domain.events``)."""

    def __call__(
        self,
        session: Session,
        run: _RunT_contra,
        event: str,
        /,
        *,
        request_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None: ...


@dataclass(slots=True)
class FileErrorItem:
    """One per-file error as a PATCH reports it: what every kind's error rows hold (spec §2.3,
    §6; a cleanup's has nothing more, a backup's, restore's or drill's also an ``exception``)."""

    index: int
    path: str
    type: str

    def columns(self) -> dict[str, Any]:
        """The columns of its error row, but for the run's id."""
        return asdict(self)


class ReportedErrors(Protocol):
    """The ``/errors`` a PATCH reports: its per-file ``items`` replace the run's."""

    @property
    def count(self) -> int: ...

    @property
    def reason(self) -> str: ...

    @property
    def diagnostics(self) -> str | None: ...

    @property
    def items(self) -> Sequence[FileErrorItem]: ...


ErrorsT = TypeVar("ErrorsT", bound=ReportedErrors)


@dataclass(slots=True)
class RunUpdate(Generic[StateT, ErrorsT]):
    """What a PATCH (or a worker) reports about a run; ``None`` means "not reported"."""

    state: StateT | None = None
    started_time: datetime | None = None
    ended_time: datetime | None = None
    errors: ErrorsT | None = None
    counters: dict[str, int] = field(default_factory=dict)

    def column_values(self) -> dict[str, Any]:
        """The run's columns this report writes (the per-file errors are rows of their own)."""
        values: dict[str, Any] = dict(self.counters)
        if self.started_time is not None:
            values["started_time"] = self.started_time
        if self.ended_time is not None:
            values["ended_time"] = self.ended_time
        if self.errors is not None:
            values.update(
                errors_count=self.errors.count,
                errors_reason=self.errors.reason,
                errors_diagnostics=self.errors.diagnostics,
            )
        return values


class RunEnding(Protocol[_RunT_contra]):
    """What one kind adds when a run ends: more columns before the write, more rows after it."""

    def values(self, run: _RunT_contra, target: str, values: dict[str, Any]) -> dict[str, Any]: ...

    def after(self, session: Session, run: _RunT_contra, target: str) -> None: ...


@dataclass(frozen=True, slots=True)
class RunKind(Generic[RunT, ErrorT, StateT]):
    """One kind of run: its table (the repository's, which also names the run's agent and error
    rows), its state machine (``domain.run_states``) and its events; its wording follows from
    the machine's noun."""

    machine: StateMachine[StateT]
    repository: type[RunRepository[RunT, ErrorT]]
    record_event: RecordEvent[RunT]
    # The 403 to a report from another token than the run's agent's; None: the usual sentence.
    not_the_agent: str | None = None
    # Columns every final state writes besides ``ended_time`` (a lock the run held, freed).
    final_values: Mapping[str, Any] = field(default_factory=dict)
    ending: RunEnding[RunT] | None = None

    @property
    def name(self) -> JobKind:
        """The kind's noun: in messages, and the task a dispatcher publishes."""
        return cast(JobKind, self.machine.noun)

    @property
    def not_found(self) -> str:
        return f"{self.name.capitalize()} not found."

    @property
    def not_the_agent_message(self) -> str:
        if self.not_the_agent is not None:
            return self.not_the_agent
        return (
            f"Progress and results may only be reported by the {self.name}'s agent, with its "
            "own token (A9)."
        )

    def agent_of(self, run: RunT) -> str:
        """The agent that reports the run's progress and result (the repository's column)."""
        agent_id: str = getattr(run, self.repository.agent_key)
        return agent_id

    def error_row(self, run_id: str, item: FileErrorItem) -> ErrorT:
        """One reported per-file error as a row of the run's error table."""
        repository = self.repository
        row: ErrorT = repository.error_model(**{repository.run_key: run_id}, **item.columns())
        return row

    def insert_start(self, session: Session, values: dict[str, Any], **start: Any) -> RunT:
        """Insert a new run's row (``new_run_values``) and record the event of its start state
        with the run's request id; ``start`` is what the kind's start event says more (a
        restore's or cleanup's ``vault_encrypted``)."""
        repository = self.repository(session)
        repository.insert(values)
        run: RunT = repository.model.model_construct(**values)
        event = self.machine.events[self.machine.states(values["state"])]
        self.record_event(session, run, event, request_id=run.request_id, **start)
        return run

    def move(
        self,
        session: Session,
        run: RunT,
        target: StateT,
        values: dict[str, Any] | None = None,
        *,
        request_id: str | None = None,
        event_extra: dict[str, Any] | None = None,
        attempt: int | None = None,
    ) -> bool:
        """Move ``run`` to ``target`` if the state machine allows it from its current state:
        the one state change of every run, a compare-and-set in the database. An executor
        passes its ``attempt``: the move then also needs it to still own the run.

        Returns False (and writes nothing) when another writer got there first; on success the
        row object is updated and the state's event recorded.
        """
        machine = self.machine
        values = dict(values or {})
        final = target in machine.final
        if final:
            values.setdefault("ended_time", utcnow())
            values.update(self.final_values)
            if self.ending is not None:
                values = self.ending.values(run, target, values)
        if not self.repository(session).compare_and_set(
            run.id, machine.sources_of(target), target, values, attempt=attempt
        ):
            return False
        for key, value in values.items():
            setattr(run, key, value)
        run.state = target
        event = machine.events[target]
        if request_id is None and event in machine.events_with_request_id:
            request_id = str(uuid.uuid4())
        self.record_event(session, run, event, request_id=request_id, extra=event_extra)
        if final and self.ending is not None:
            self.ending.after(session, run, target)
        return True


def new_run_values(project_id: str, state: str, **columns: Any) -> dict[str, Any]:
    """The row of a run just requested in ``state`` (with the kind's own ``columns``): a fresh
    id and request id, published (to a worker), created and updated now."""
    now = utcnow()
    return {
        "id": str(uuid.uuid4()),
        "project_id": project_id,
        **columns,
        "state": state,
        "request_id": str(uuid.uuid4()),
        "published_at": now,
        "created_at": now,
        "updated_at": now,
    }


def backup_values(backup: Backup) -> dict[str, Any]:
    """What a run that reads a backup (a restore, a drill) records of it."""
    shared = ("configuration_id", "vault_id", "snapshot_id")
    return {"backup_id": backup.id} | {name: getattr(backup, name) for name in shared}


def stale_attempt(noun: str, attempt: int, owner: int) -> str:
    return (
        f"Attempt {attempt} of this {noun} no longer owns it (attempt {owner} does): "
        "the report was not recorded."
    )


class RunService(ProjectPages[RunT], Generic[RunT, ErrorT, StateT]):
    """Use cases every run resource has, for the API: read (get, list: B2/R2/C2), errors,
    events, and the PATCH (:meth:`update`). Subclasses set :attr:`kind` and add the start."""

    kind: RunKind[RunT, ErrorT, StateT]

    def __init__(self, db: Database, dispatcher: Dispatcher | None = None) -> None:
        self.db = db
        self.dispatcher = dispatcher

    @property
    def noun(self) -> str:
        return self.kind.name

    def rows(self, session: Session) -> RunRepository[RunT, ErrorT]:
        return self.kind.repository(session)

    def record_and_publish(
        self, insert: Callable[[Session], RunT], active_message: str | None = None
    ) -> RunT:
        """Record a new run with ``insert`` (committed) and only then hand it to a worker. With
        ``active_message``, losing the race for the kind's unique active lock to a concurrent
        start is that :class:`Conflict`."""
        try:
            with self.db.transaction() as session:
                run = insert(session)
        except sa.exc.IntegrityError as exc:
            if active_message is None:
                raise
            raise Conflict(active_message) from exc
        if self.dispatcher is not None:
            self.dispatcher.publish(self.kind.name, run.id, agent_id=self.kind.agent_of(run))
        return run

    def get(self, project_id: str, run_id: str) -> RunT:
        """B3/R3/C3: one run of the project (404 otherwise)."""
        with self.db.read() as session:
            return self._get(session, project_id, run_id)

    def errors(self, project_id: str, run_id: str) -> tuple[RunT, list[ErrorT]]:
        """ER2/ER3: the run and its per-file errors."""
        with self.db.read() as session:
            run = self._get(session, project_id, run_id)
            return run, self.kind.repository(session).errors(run_id)

    def events(
        self, project_id: str, run_id: str, *, marker: int | None, limit: int, sort_dir: SortDir
    ) -> Page[Event]:
        """EV6/EV7: a page of the run's events after ``marker`` (an event id)."""
        with self.db.read() as session:
            self._get(session, project_id, run_id)
            return self.kind.repository(session).events(
                project_id, run_id, marker=marker, limit=limit, sort_dir=sort_dir
            )

    def update(
        self,
        project_id: str,
        run_id: str,
        update: RunUpdate[StateT, Any],
        reporter: str | None,
        attempt: int | None = None,
    ) -> None:
        """Apply a PATCH atomically: a stop request, agent progress, or an agent's final report.
        ``reporter`` is the agent the caller's token belongs to (None for a user): only the
        run's own agent reports on it; anyone with write access may ask it to stop.

        The same for every kind: counters sent with a stop request are kept, and a stop of a run
        no worker has claimed ends it at once (OQ-29/OQ-30). A report of the run's own agent on
        a claimed run also beats its heartbeat; with ``attempt`` (``X-Run-Attempt``) it is
        fenced like a hosted executor's writes: a report of an attempt that no longer owns the
        run is a 409 that changes nothing."""
        kind, machine = self.kind, self.kind.machine
        with self.db.transaction() as session:
            repo = kind.repository(session)
            run = self._get(session, project_id, run_id)
            if run.state in machine.final:
                raise Conflict(machine.final_conflict)
            values = update.column_values()
            state = update.state
            agent_fields = state in machine.agent_settable or bool(values)
            if agent_fields and reporter != kind.agent_of(run):
                raise Forbidden(kind.not_the_agent_message)
            values |= self._executor_values(run, reporter, attempt)
            self.check_report(session, run, update)
            if state is None:
                if not repo.update_where_state(run.id, machine.active, values, attempt=attempt):
                    raise Conflict(self._refusal(session, run.id, attempt))
            elif state in machine.user_settable:
                if values:
                    repo.update_where_state(run.id, machine.active, values, attempt=attempt)
                self._stop(session, run)
            elif not kind.move(session, run, state, values, attempt=attempt):
                current = repo.state_of(run.id)
                if current in machine.final:
                    raise Conflict(machine.final_conflict)
                if attempt is not None and repo.attempts_of(run.id) != attempt:
                    raise Conflict(stale_attempt(kind.name, attempt, repo.attempts_of(run.id)))
                raise Conflict(f"A {kind.name} in state '{current}' cannot move to '{state}'.")
            if update.errors is not None:
                rows = [kind.error_row(run.id, item) for item in update.errors.items]
                repo.replace_errors(run.id, rows)

    def _executor_values(
        self, run: RunT, reporter: str | None, attempt: int | None
    ) -> dict[str, Any]:
        """What a report of the run's executor adds: 409 when its attempt no longer owns the
        run, else a fresh heartbeat (on a claimed run: the report is its sign of life)."""
        if attempt is not None and run.attempts != attempt:
            raise Conflict(stale_attempt(self.kind.name, attempt, run.attempts))
        if reporter is not None and reporter == self.kind.agent_of(run) and run.heartbeat_at:
            return {"heartbeat_at": utcnow()}
        return {}

    def _refusal(self, session: Session, run_id: str, attempt: int | None) -> str:
        """Why a report found nothing to write: the run ended, or another attempt owns it."""
        owner = self.kind.repository(session).attempts_of(run_id)
        if attempt is not None and owner != attempt:
            return stale_attempt(self.kind.name, attempt, owner)
        return self.kind.machine.final_conflict

    def check_report(self, session: Session, run: RunT, update: RunUpdate[StateT, Any]) -> None:
        """What a kind checks of its agent's report before it is written (nothing by default)."""

    def _stop(self, session: Session, run: RunT) -> None:
        kind, machine = self.kind, self.kind.machine
        was = run.state
        if was == machine.stop_requested:
            return  # a repeated stop request changes nothing
        if not kind.move(session, run, machine.stop_requested):
            state = kind.repository(session).state_of(run.id)
            raise Conflict(f"A {kind.name} in state '{state}' cannot be stopped.")
        if was in machine.starts and kind.repository(session).heartbeat_of(run.id) is None:
            # Nobody has claimed it (a worker's claim writes the first heartbeat in the same
            # UPDATE as `queued`), so nobody else would end it: stop it now (OQ-29/OQ-30).
            kind.move(session, run, machine.states("stopped"))

    def _get(self, session: Session, project_id: str, run_id: str) -> RunT:
        run = self.kind.repository(session).get(run_id, project_id) if storable(run_id) else None
        if run is None:
            raise NotFound(self.kind.not_found)
        return run
