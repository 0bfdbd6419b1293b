"""Cleanups: start (C1), read (C2/C3), update (C4), errors (ER3), events (EV7).

A cleanup maintains one agent's vault; at most one cleanup per vault is active at a time
(``active_lock``). What every run shares (reading, the PATCH, the state change) is in
``domain.runs``; the start is the cleanup's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from cloudbackup.domain.agents import live_agent
from cloudbackup.domain.errors import Conflict, Forbidden, InvalidInput
from cloudbackup.domain.events import record_cleanup_event
from cloudbackup.domain.run_states import CLEANUP_MACHINE, CleanupState
from cloudbackup.domain.runs import FileErrorItem, RunKind, RunService, RunUpdate, new_run_values
from cloudbackup.store.run_repositories import CleanupRepository
from cloudbackup.store.tables import Cleanup, CleanupError

ACTIVE_MESSAGE = (
    "A cleanup of this agent's vault is already in progress; wait for it to finish or stop it."
)


# A cleanup's per-file error has no ``exception`` (spec §6): the columns every run's has.
CleanupErrorItem = FileErrorItem


@dataclass(slots=True)
class CleanupErrors:
    """The `/errors` value of C4: `diagnostics` and every `exception` are null (spec §6)."""

    count: int
    reason: str
    items: list[CleanupErrorItem] = field(default_factory=list)
    diagnostics: None = None


@dataclass(slots=True)
class CleanupUpdate(RunUpdate[CleanupState, CleanupErrors]):
    """What a C4 PATCH (or a worker) reports; ``None`` means "not reported"."""

    snapshot_ids: list[int] | None = None

    def column_values(self) -> dict[str, Any]:
        # Not super(): a slots dataclass is a new class, which zero-argument super() misses.
        values = RunUpdate.column_values(self)
        if self.snapshot_ids is not None:
            values["snapshot_ids"] = list(self.snapshot_ids)
        return values


CLEANUP_RUNS: RunKind[Cleanup, CleanupError, CleanupState] = RunKind(
    machine=CLEANUP_MACHINE,
    repository=CleanupRepository,
    record_event=record_cleanup_event,
    final_values={"active_lock": None},  # a final state frees the vault's lock
)


class CleanupService(RunService[Cleanup, CleanupError, CleanupState]):
    """Use cases of the cleanups resource, for the API: the start here, the rest shared."""

    kind = CLEANUP_RUNS

    # -- C1 ---------------------------------------------------------------------------------
    def start(
        self, project_id: str, agent_id: str, state_value: str, agent_header: str | None
    ) -> Cleanup:
        """Record a new cleanup (committed) and only then hand it to a worker."""
        state = CLEANUP_MACHINE.parse(state_value)
        if state not in CLEANUP_MACHINE.starts:
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
        return self.record_and_publish(  # the active lock here: active_lock
            lambda session: self._insert(session, project_id, agent_id, state, agent_header),
            ACTIVE_MESSAGE,
        )

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
        if repo.has_active(agent.id, CLEANUP_MACHINE.active):
            raise Conflict(ACTIVE_MESSAGE)
        values = new_run_values(
            project_id,
            state.value,
            agent_id=agent.id,
            vault_id=agent.vault_id,
            snapshot_ids=[],
            errors_diagnostics="",
            active_lock=agent.id,
        )
        return CLEANUP_RUNS.insert_start(session, values, vault_encrypted=agent.vault_encrypted)
