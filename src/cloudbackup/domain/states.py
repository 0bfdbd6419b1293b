"""The backup state machine (spec §14.1): the one place that says which moves are allowed.

Both the HTTP PATCH path and the workers ask this module before they write a state; the write
itself is a compare-and-set in the database (see ``store.repositories.BackupRepository``), so two
writers can never move a backup backwards or out of a final state.
"""

from __future__ import annotations

from enum import StrEnum


class BackupState(StrEnum):
    START_REQUESTED = "start_requested"
    START_SCHEDULED = "start_scheduled"
    QUEUED = "queued"
    PREPARING = "preparing"
    IN_PROGRESS = "in_progress"
    STOP_REQUESTED = "stop_requested"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    STOPPED = "stopped"
    SKIPPED = "skipped"
    MISSED = "missed"


S = BackupState

FINAL_STATES: frozenset[BackupState] = frozenset(
    {S.COMPLETED, S.COMPLETED_WITH_ERRORS, S.FAILED, S.STOPPED, S.SKIPPED, S.MISSED}
)
# Order matters: it is the order of the spec's 409 message.
FINAL_STATES_MESSAGE_ORDER = (
    "completed",
    "completed_with_errors",
    "failed",
    "stopped",
    "skipped",
    "missed",
)
START_STATES: frozenset[BackupState] = frozenset({S.START_REQUESTED, S.START_SCHEDULED})
ACTIVE_STATES: frozenset[BackupState] = frozenset(set(BackupState) - FINAL_STATES)
RUNNING_STATES: frozenset[BackupState] = frozenset({S.QUEUED, S.PREPARING, S.IN_PROGRESS})
RESTORABLE_STATES: frozenset[BackupState] = frozenset({S.COMPLETED, S.COMPLETED_WITH_ERRORS})

# Transitions b3-b13 of spec §14.1: target state -> the states it may be entered from.
_ALLOWED_FROM: dict[BackupState, frozenset[BackupState]] = {
    S.QUEUED: START_STATES,
    S.PREPARING: frozenset({S.QUEUED}),
    S.IN_PROGRESS: frozenset({S.QUEUED, S.PREPARING}),
    S.STOP_REQUESTED: frozenset(START_STATES | RUNNING_STATES),
    S.COMPLETED: frozenset({S.IN_PROGRESS, S.STOP_REQUESTED}),
    S.COMPLETED_WITH_ERRORS: frozenset({S.IN_PROGRESS, S.STOP_REQUESTED}),
    S.FAILED: frozenset(START_STATES | RUNNING_STATES | {S.STOP_REQUESTED}),
    S.STOPPED: frozenset({S.IN_PROGRESS, S.STOP_REQUESTED}),
    S.SKIPPED: frozenset(START_STATES | {S.QUEUED}),
    S.MISSED: frozenset({S.START_SCHEDULED}),
}

# What each kind of writer may set through PATCH (spec B4 scenarios).
AGENT_SETTABLE: frozenset[BackupState] = frozenset(
    {
        S.QUEUED,
        S.PREPARING,
        S.IN_PROGRESS,
        S.COMPLETED,
        S.COMPLETED_WITH_ERRORS,
        S.FAILED,
        S.STOPPED,
        S.SKIPPED,
    }
)
USER_SETTABLE: frozenset[BackupState] = frozenset({S.STOP_REQUESTED})

# Event emitted on entering each state (spec §14.9).
STATE_EVENT: dict[BackupState, str] = {
    S.START_REQUESTED: "backup_start_request",
    S.START_SCHEDULED: "backup_start_request",
    S.QUEUED: "backup_queued",
    S.PREPARING: "backup_preparing",
    S.IN_PROGRESS: "backup_in_progress",
    S.STOP_REQUESTED: "backup_stop_request",
    S.COMPLETED: "backup_completed",
    S.COMPLETED_WITH_ERRORS: "backup_completed",
    S.FAILED: "backup_failed",
    S.STOPPED: "backup_stopped",
    S.SKIPPED: "backup_skipped",
    S.MISSED: "backup_missed",
}
# Events that carry a request_id (spec §15.1, OQ-31).
EVENTS_WITH_REQUEST_ID = frozenset(
    {"backup_start_request", "backup_stop_request", "backup_skipped", "backup_missed"}
)

FINAL_CONFLICT_MESSAGE = (
    "Modifying a backup that is already in a state of "
    "['completed', 'completed_with_errors', 'failed', 'stopped', 'skipped', 'missed']"
    " is not allowed."
)


def is_final(state: BackupState | str) -> bool:
    return BackupState(state) in FINAL_STATES


def sources_of(target: BackupState) -> frozenset[BackupState]:
    """States from which ``target`` may be entered (empty for the two initial states)."""
    return _ALLOWED_FROM.get(target, frozenset())


def can_move(current: BackupState | str, target: BackupState | str) -> bool:
    return BackupState(current) in sources_of(BackupState(target))


def parse_state(value: str) -> BackupState | None:
    try:
        return BackupState(value)
    except ValueError:
        return None
