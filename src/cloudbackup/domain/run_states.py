"""The run state machines (spec §14.1-§14.3): one mechanism, three kinds as data.

Both the HTTP PATCH path and the workers ask a :class:`StateMachine` before they write a state;
the write itself is a compare-and-set in the database (``store.repositories.RunRepository``), so
two writers can never move a run backwards or out of a final state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

# The states of each kind of run, each named once per kind that has it. StrEnum's functional
# form makes every value its name in lower case: the spec's wire form ("completed_with_errors").
BackupState = StrEnum(
    "BackupState",
    "START_REQUESTED START_SCHEDULED QUEUED PREPARING IN_PROGRESS STOP_REQUESTED"
    " COMPLETED COMPLETED_WITH_ERRORS FAILED STOPPED SKIPPED MISSED",
    module=__name__,
)
# Like backups minus start_scheduled/skipped/missed (OQ-30).
RestoreState = StrEnum(
    "RestoreState",
    "START_REQUESTED QUEUED PREPARING IN_PROGRESS STOP_REQUESTED"
    " COMPLETED COMPLETED_WITH_ERRORS FAILED STOPPED",
    module=__name__,
)
# No preparing, skipped or missed (OQ-12).
CleanupState = StrEnum(
    "CleanupState",
    "START_REQUESTED START_SCHEDULED QUEUED IN_PROGRESS STOP_REQUESTED"
    " COMPLETED COMPLETED_WITH_ERRORS FAILED STOPPED",
    module=__name__,
)
# A restore drill (issue 14, an API extension): it passes or fails, or is stopped.
DrillState = StrEnum(
    "DrillState",
    "START_REQUESTED QUEUED IN_PROGRESS STOP_REQUESTED PASSED FAILED STOPPED",
    module=__name__,
)


StateT = TypeVar("StateT", BackupState, RestoreState, CleanupState, DrillState)


@dataclass(frozen=True, slots=True)
class StateMachine(Generic[StateT]):
    """One kind of run's states and moves. ``moves`` maps a target state to the states it may
    be entered from; ``final`` is ordered as the spec's 409 message lists it."""

    noun: str
    states: type[StateT]
    starts: frozenset[StateT]
    running: frozenset[StateT]
    final_order: tuple[StateT, ...]
    final: frozenset[StateT]
    active: frozenset[StateT]  # every state that is not final
    moves: Mapping[StateT, frozenset[StateT]]
    # What each kind of writer may set through PATCH: agents report, users only ask to stop.
    agent_settable: frozenset[StateT]
    user_settable: frozenset[StateT]
    events: Mapping[StateT, str]  # the event recorded on entering each state (spec §14.9)
    events_with_request_id: frozenset[str]  # spec §15.1, OQ-31

    @property
    def stop_requested(self) -> StateT:
        return self.states("stop_requested")

    @property
    def final_conflict(self) -> str:
        """The 409 answer to any change of a run in a final state (byte for byte the spec's)."""
        listed = ", ".join(f"'{state.value}'" for state in self.final_order)
        return f"Modifying a {self.noun} that is already in a state of [{listed}] is not allowed."

    def sources_of(self, target: StateT) -> frozenset[StateT]:
        """States from which ``target`` may be entered (empty for the initial states)."""
        return self.moves.get(target, frozenset())

    def can_move(self, current: str, target: str) -> bool:
        return self.states(current) in self.sources_of(self.states(target))

    def is_final(self, state: str) -> bool:
        return self.states(state) in self.final

    def parse(self, value: str) -> StateT | None:
        try:
            return self.states(value)
        except ValueError:
            return None


def _machine(
    noun: str,
    states: type[StateT],
    *,
    starts: Iterable[StateT],
    running: Iterable[StateT],
    final: tuple[StateT, ...],
    moves: Mapping[StateT, Iterable[StateT]],
    not_reported_by_agents: Iterable[StateT] = (),
    events_with_request_id: Iterable[StateT] = (),
) -> StateMachine[StateT]:
    """A machine whose events are ``{noun}_{state}``, with the spec's exceptions: a start is a
    ``_start_request``, a stop request a ``_stop_request``, both kinds of completion
    ``_completed``."""
    starts, running = frozenset(starts), frozenset(running)
    stop = states("stop_requested")

    def event(state: StateT) -> str:
        if state in starts:
            return f"{noun}_start_request"
        if state is stop:
            return f"{noun}_stop_request"
        if state.value == "completed_with_errors":
            return f"{noun}_completed"
        return f"{noun}_{state.value}"

    events = {state: event(state) for state in states}
    return StateMachine(
        noun=noun,
        states=states,
        starts=starts,
        running=running,
        final_order=final,
        final=frozenset(final),
        active=frozenset(set(states) - set(final)),
        moves={target: frozenset(sources) for target, sources in moves.items()},
        agent_settable=frozenset(running | set(final)) - set(not_reported_by_agents),
        user_settable=frozenset({stop}),
        events=events,
        events_with_request_id=frozenset(
            {events[s] for s in starts}
            | {events[stop]}
            | {events[s] for s in events_with_request_id}
        ),
    )


B = BackupState
_B_STARTS = {B.START_REQUESTED, B.START_SCHEDULED}
_B_RUNNING = {B.QUEUED, B.PREPARING, B.IN_PROGRESS}
BACKUP_MACHINE: StateMachine[BackupState] = _machine(
    "backup",
    BackupState,
    starts=_B_STARTS,
    running=_B_RUNNING,
    final=(B.COMPLETED, B.COMPLETED_WITH_ERRORS, B.FAILED, B.STOPPED, B.SKIPPED, B.MISSED),
    moves={  # transitions b3-b13
        B.QUEUED: _B_STARTS,
        B.PREPARING: {B.QUEUED},
        B.IN_PROGRESS: {B.QUEUED, B.PREPARING},
        B.STOP_REQUESTED: _B_STARTS | _B_RUNNING,
        B.COMPLETED: {B.IN_PROGRESS, B.STOP_REQUESTED},
        B.COMPLETED_WITH_ERRORS: {B.IN_PROGRESS, B.STOP_REQUESTED},
        B.FAILED: _B_STARTS | _B_RUNNING | {B.STOP_REQUESTED},
        B.STOPPED: {B.IN_PROGRESS, B.STOP_REQUESTED},
        B.SKIPPED: _B_STARTS | {B.QUEUED},
        B.MISSED: {B.START_SCHEDULED},
    },
    not_reported_by_agents=(B.MISSED,),  # only the scheduler decides a start was missed
    events_with_request_id=(B.SKIPPED, B.MISSED),
)

R = RestoreState
_R_RUNNING = {R.QUEUED, R.PREPARING, R.IN_PROGRESS}
RESTORE_MACHINE: StateMachine[RestoreState] = _machine(
    "restore",
    RestoreState,
    starts={R.START_REQUESTED},
    running=_R_RUNNING,
    final=(R.COMPLETED, R.COMPLETED_WITH_ERRORS, R.FAILED, R.STOPPED),
    moves={  # transitions r2-r7
        R.QUEUED: {R.START_REQUESTED},
        R.PREPARING: {R.QUEUED},
        R.IN_PROGRESS: {R.QUEUED, R.PREPARING},
        R.STOP_REQUESTED: {R.START_REQUESTED} | _R_RUNNING,
        R.COMPLETED: {R.IN_PROGRESS, R.STOP_REQUESTED},
        R.COMPLETED_WITH_ERRORS: {R.IN_PROGRESS, R.STOP_REQUESTED},
        R.FAILED: {R.START_REQUESTED, R.STOP_REQUESTED} | _R_RUNNING,
        R.STOPPED: {R.IN_PROGRESS, R.STOP_REQUESTED},
    },
)

C = CleanupState
_C_STARTS = {C.START_REQUESTED, C.START_SCHEDULED}
_C_RUNNING = {C.QUEUED, C.IN_PROGRESS}
CLEANUP_MACHINE: StateMachine[CleanupState] = _machine(
    "cleanup",
    CleanupState,
    starts=_C_STARTS,
    running=_C_RUNNING,
    final=(C.COMPLETED, C.COMPLETED_WITH_ERRORS, C.FAILED, C.STOPPED),
    moves={  # transitions c2-c7
        C.QUEUED: _C_STARTS,
        C.IN_PROGRESS: {C.QUEUED},
        C.STOP_REQUESTED: _C_STARTS | _C_RUNNING,
        C.COMPLETED: {C.IN_PROGRESS, C.STOP_REQUESTED},
        C.COMPLETED_WITH_ERRORS: {C.IN_PROGRESS, C.STOP_REQUESTED},
        C.FAILED: _C_STARTS | _C_RUNNING | {C.STOP_REQUESTED},
        C.STOPPED: {C.IN_PROGRESS, C.STOP_REQUESTED},
    },
)

D = DrillState
_D_RUNNING = {D.QUEUED, D.IN_PROGRESS}
DRILL_MACHINE: StateMachine[DrillState] = _machine(
    "drill",
    DrillState,
    starts={D.START_REQUESTED},
    running=_D_RUNNING,
    final=(D.PASSED, D.FAILED, D.STOPPED),
    moves={
        D.QUEUED: {D.START_REQUESTED},
        D.IN_PROGRESS: {D.QUEUED},
        D.STOP_REQUESTED: {D.START_REQUESTED} | _D_RUNNING,
        # A drill whose check finished before it saw a stop request has its proof: it passes.
        D.PASSED: {D.IN_PROGRESS, D.STOP_REQUESTED},
        D.FAILED: {D.START_REQUESTED, D.STOP_REQUESTED} | _D_RUNNING,
        D.STOPPED: {D.IN_PROGRESS, D.STOP_REQUESTED},
    },
    not_reported_by_agents=tuple(DrillState),  # only the service's own executor runs drills
)

# The states from which a backup can be restored.
RESTORABLE_STATES: frozenset[BackupState] = frozenset({B.COMPLETED, B.COMPLETED_WITH_ERRORS})
