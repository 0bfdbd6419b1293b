"""Cleanups: start (C1), read (C2/C3), update (C4), errors (ER3), events (EV7).

A cleanup maintains one agent's vault. Every state change goes through :func:`transition`, a
compare-and-set that asks ``domain.states`` whether the move is allowed; the HTTP PATCH path and
the workers share it. At most one cleanup per vault is active at a time (``active_lock``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.domain.agents import live_agent, storable
from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from cloudbackup.domain.events import record_cleanup_event
from cloudbackup.domain.states import (
    CLEANUP_ACTIVE_STATES,
    CLEANUP_AGENT_SETTABLE,
    CLEANUP_EVENTS_WITH_REQUEST_ID,
    CLEANUP_FINAL_CONFLICT_MESSAGE,
    CLEANUP_FINAL_STATES,
    CLEANUP_START_STATES,
    CLEANUP_STATE_EVENT,
    CLEANUP_USER_SETTABLE,
    CleanupState,
    cleanup_sources_of,
    parse_cleanup_state,
)
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import Page, SortDir
from cloudbackup.store.run_repositories import CleanupRepository
from cloudbackup.store.tables import Cleanup, CleanupError, Event, utcnow

NOT_FOUND = "Cleanup not found."
ACTIVE_MESSAGE = (
    "A cleanup of this agent's vault is already in progress; wait for it to finish or stop it."
)


def transition(
    session: Session,
    cleanup: Cleanup,
    target: CleanupState,
    values: dict[str, Any] | None = None,
    *,
    request_id: str | None = None,
) -> bool:
    """Move ``cleanup`` to ``target`` if the state machine allows it from its current state.

    Returns False (and writes nothing) when another writer got there first; on success the row
    object is updated and the state's event recorded. A final state frees the vault's lock.
    """
    values = dict(values or {})
    if target in CLEANUP_FINAL_STATES:
        values.setdefault("ended_time", utcnow())
        values["active_lock"] = None
    if not CleanupRepository(session).compare_and_set(
        cleanup.id, cleanup_sources_of(target), target, values
    ):
        return False
    for key, value in values.items():
        setattr(cleanup, key, value)
    cleanup.state = target
    event = CLEANUP_STATE_EVENT[target]
    if request_id is None and event in CLEANUP_EVENTS_WITH_REQUEST_ID:
        request_id = str(uuid.uuid4())
    record_cleanup_event(session, cleanup, event, request_id=request_id)
    return True


@dataclass(slots=True)
class CleanupErrorItem:
    index: int
    path: str
    type: str


@dataclass(slots=True)
class CleanupErrors:
    """The `/errors` value of C4: `diagnostics` and every `exception` are null (spec §6)."""

    count: int
    reason: str
    items: list[CleanupErrorItem] = field(default_factory=list)


@dataclass(slots=True)
class CleanupUpdate:
    """What a C4 PATCH (or a worker) reports; ``None`` means "not reported"."""

    state: CleanupState | None = None
    started_time: datetime | None = None
    ended_time: datetime | None = None
    snapshot_ids: list[int] | None = None
    errors: CleanupErrors | None = None
    counters: dict[str, int] = field(default_factory=dict)

    def column_values(self) -> dict[str, Any]:
        values: dict[str, Any] = dict(self.counters)
        if self.started_time is not None:
            values["started_time"] = self.started_time
        if self.ended_time is not None:
            values["ended_time"] = self.ended_time
        if self.snapshot_ids is not None:
            values["snapshot_ids"] = list(self.snapshot_ids)
        if self.errors is not None:
            values.update(
                errors_count=self.errors.count,
                errors_reason=self.errors.reason,
                errors_diagnostics=None,
            )
        return values


class CleanupService:
    """Use cases of the cleanups resource, for the API."""

    def __init__(self, db: Database, dispatcher: Dispatcher | None = None) -> None:
        self.db = db
        self.dispatcher = dispatcher

    # -- C1 ---------------------------------------------------------------------------------
    def start(
        self, project_id: str, agent_id: str, state_value: str, agent_header: str | None
    ) -> Cleanup:
        """Record a new cleanup (committed) and only then hand it to a worker."""
        state = parse_cleanup_state(state_value)
        if state not in CLEANUP_START_STATES:
            raise InvalidInput(
                "Validation failed.",
                [f"state must be 'start_requested' or 'start_scheduled', not {state_value!r}."],
            )
        scheduled = state is CleanupState.START_SCHEDULED
        if scheduled and not agent_header:
            raise InvalidInput(
                "Validation failed.",
                ["The X-Agent-Id header is required when state is start_scheduled."],
            )
        try:
            with self.db.transaction() as session:
                cleanup = self._insert(session, project_id, agent_id, state, agent_header)
        except sa.exc.IntegrityError as exc:
            # The unique active_lock lost a race with a concurrent start.
            raise Conflict(ACTIVE_MESSAGE) from exc
        if self.dispatcher is not None:
            self.dispatcher.publish("cleanup", cleanup.id, agent_id=cleanup.agent_id)
        return cleanup

    def _insert(
        self,
        session: Session,
        project_id: str,
        agent_id: str,
        state: CleanupState,
        agent_header: str | None,
    ) -> Cleanup:
        agent = live_agent(session, project_id, agent_id)
        scheduled = state is CleanupState.START_SCHEDULED
        if scheduled and agent_header != agent.id:
            raise Forbidden("X-Agent-Id is not the agent whose vault this cleanup maintains.")
        if scheduled and not agent.enabled:
            raise Conflict("The agent is disabled; scheduled cleanups do not run.")
        repo = CleanupRepository(session)
        if repo.has_active(agent.id, CLEANUP_ACTIVE_STATES):
            raise Conflict(ACTIVE_MESSAGE)
        now = utcnow()
        values: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "project_id": project_id,
            "agent_id": agent.id,
            "vault_id": agent.vault_id,
            "state": state.value,
            "snapshot_ids": [],
            "errors_diagnostics": "",
            "active_lock": agent.id,
            "request_id": str(uuid.uuid4()),
            "published_at": now,
            "created_at": now,
            "updated_at": now,
        }
        repo.insert(values)
        cleanup = Cleanup.model_construct(**values)
        record_cleanup_event(
            session,
            cleanup,
            CLEANUP_STATE_EVENT[state],
            request_id=cleanup.request_id,
            vault_encrypted=agent.vault_encrypted,
        )
        return cleanup

    # -- C2 / C3 ----------------------------------------------------------------------------
    def get(self, project_id: str, cleanup_id: str) -> Cleanup:
        with self.db.transaction() as session:
            return self._get(session, project_id, cleanup_id)

    def page(
        self, project_id: str, *, marker: str | None, limit: int, sort_dir: SortDir
    ) -> Page[Cleanup]:
        with self.db.transaction() as session:
            repo = CleanupRepository(session)
            marker_seq = None
            if marker is not None:
                marker_seq = repo.seq_of(marker, project_id)
                if marker_seq is None:
                    raise InvalidInput(
                        "Validation failed.",
                        [f"marker {marker!r} is not a cleanup of this project."],
                    )
            return repo.page(project_id, marker_seq=marker_seq, limit=limit, sort_dir=sort_dir)

    # -- ER3 / EV7 --------------------------------------------------------------------------
    def errors(self, project_id: str, cleanup_id: str) -> tuple[Cleanup, list[CleanupError]]:
        with self.db.transaction() as session:
            cleanup = self._get(session, project_id, cleanup_id)
            return cleanup, CleanupRepository(session).errors(cleanup_id)

    def events(
        self, project_id: str, cleanup_id: str, *, marker: int | None, limit: int, sort_dir: SortDir
    ) -> Page[Event]:
        with self.db.transaction() as session:
            self._get(session, project_id, cleanup_id)
            return CleanupRepository(session).events(
                project_id, cleanup_id, marker=marker, limit=limit, sort_dir=sort_dir
            )

    # -- C4 ---------------------------------------------------------------------------------
    def update(
        self, project_id: str, cleanup_id: str, update: CleanupUpdate, agent_header: str | None
    ) -> None:
        """Apply a PATCH atomically: a stop request, agent progress, or an agent's final report."""
        with self.db.transaction() as session:
            repo = CleanupRepository(session)
            cleanup = self._get(session, project_id, cleanup_id)
            if cleanup.state in CLEANUP_FINAL_STATES:
                raise Conflict(CLEANUP_FINAL_CONFLICT_MESSAGE)
            values = update.column_values()
            agent_fields = update.state in CLEANUP_AGENT_SETTABLE or bool(values)
            if agent_fields and agent_header != cleanup.agent_id:
                raise Forbidden(
                    "Progress and results may only be reported by the cleanup's agent "
                    "(send its id in X-Agent-Id)."
                )
            if update.state is None:
                if not repo.update_where_state(cleanup.id, CLEANUP_ACTIVE_STATES, values):
                    raise Conflict(CLEANUP_FINAL_CONFLICT_MESSAGE)
            elif update.state in CLEANUP_USER_SETTABLE:
                if values:
                    repo.update_where_state(cleanup.id, CLEANUP_ACTIVE_STATES, values)
                self._stop(session, cleanup)
            elif not transition(session, cleanup, update.state, values):
                current = repo.state_of(cleanup.id)
                if current in CLEANUP_FINAL_STATES:
                    raise Conflict(CLEANUP_FINAL_CONFLICT_MESSAGE)
                raise Conflict(f"A cleanup in state '{current}' cannot move to '{update.state}'.")
            if update.errors is not None:
                repo.replace_errors(
                    cleanup.id,
                    [
                        CleanupError(
                            cleanup_id=cleanup.id, index=item.index, path=item.path, type=item.type
                        )
                        for item in update.errors.items
                    ],
                )

    def _stop(self, session: Session, cleanup: Cleanup) -> None:
        was = cleanup.state
        if was == CleanupState.STOP_REQUESTED:
            return  # a repeated stop request changes nothing
        if not transition(session, cleanup, CleanupState.STOP_REQUESTED):
            state = CleanupRepository(session).state_of(cleanup.id)
            raise Conflict(f"A cleanup in state '{state}' cannot be stopped.")
        if (
            was in CLEANUP_START_STATES
            and CleanupRepository(session).heartbeat_of(cleanup.id) is None
        ):
            # Nobody has claimed it (a worker's claim writes the first heartbeat in the same
            # UPDATE as `queued`), so nobody else would end it: stop it now (OQ-29/OQ-30).
            transition(session, cleanup, CleanupState.STOPPED)

    def _get(self, session: Session, project_id: str, cleanup_id: str) -> Cleanup:
        cleanup = (
            CleanupRepository(session).get(cleanup_id, project_id) if storable(cleanup_id) else None
        )
        if cleanup is None:
            raise NotFound(NOT_FOUND)
        return cleanup
