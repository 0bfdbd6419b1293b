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


# -- Restores (spec §14.2, OQ-30) ------------------------------------------------------------
# Like backups minus start_scheduled/skipped/missed; users and agents may both request a stop.


class RestoreState(StrEnum):
    START_REQUESTED = "start_requested"
    QUEUED = "queued"
    PREPARING = "preparing"
    IN_PROGRESS = "in_progress"
    STOP_REQUESTED = "stop_requested"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    STOPPED = "stopped"


R = RestoreState

RESTORE_FINAL_STATES: frozenset[RestoreState] = frozenset(
    {R.COMPLETED, R.COMPLETED_WITH_ERRORS, R.FAILED, R.STOPPED}
)
RESTORE_START_STATES: frozenset[RestoreState] = frozenset({R.START_REQUESTED})
RESTORE_RUNNING_STATES: frozenset[RestoreState] = frozenset({R.QUEUED, R.PREPARING, R.IN_PROGRESS})
RESTORE_ACTIVE_STATES: frozenset[RestoreState] = frozenset(set(RestoreState) - RESTORE_FINAL_STATES)

# Transitions r2-r7: target state -> the states it may be entered from.
_RESTORE_ALLOWED_FROM: dict[RestoreState, frozenset[RestoreState]] = {
    R.QUEUED: frozenset({R.START_REQUESTED}),
    R.PREPARING: frozenset({R.QUEUED}),
    R.IN_PROGRESS: frozenset({R.QUEUED, R.PREPARING}),
    R.STOP_REQUESTED: frozenset({R.START_REQUESTED} | RESTORE_RUNNING_STATES),
    R.COMPLETED: frozenset({R.IN_PROGRESS, R.STOP_REQUESTED}),
    R.COMPLETED_WITH_ERRORS: frozenset({R.IN_PROGRESS, R.STOP_REQUESTED}),
    R.FAILED: frozenset({R.START_REQUESTED, R.STOP_REQUESTED} | RESTORE_RUNNING_STATES),
    R.STOPPED: frozenset({R.IN_PROGRESS, R.STOP_REQUESTED}),
}

# What each kind of writer may set through R4 (the stop is open to users and agents alike).
RESTORE_AGENT_SETTABLE: frozenset[RestoreState] = frozenset(
    RESTORE_RUNNING_STATES | RESTORE_FINAL_STATES
)
RESTORE_USER_SETTABLE: frozenset[RestoreState] = frozenset({R.STOP_REQUESTED})

RESTORE_STATE_EVENT: dict[RestoreState, str] = {
    R.START_REQUESTED: "restore_start_request",
    R.QUEUED: "restore_queued",
    R.PREPARING: "restore_preparing",
    R.IN_PROGRESS: "restore_in_progress",
    R.STOP_REQUESTED: "restore_stop_request",
    R.COMPLETED: "restore_completed",
    R.COMPLETED_WITH_ERRORS: "restore_completed",
    R.FAILED: "restore_failed",
    R.STOPPED: "restore_stopped",
}
RESTORE_EVENTS_WITH_REQUEST_ID = frozenset({"restore_start_request", "restore_stop_request"})

RESTORE_FINAL_CONFLICT_MESSAGE = (
    "Modifying a restore that is already in a state of "
    "['completed', 'completed_with_errors', 'failed', 'stopped'] is not allowed."
)


def restore_sources_of(target: RestoreState) -> frozenset[RestoreState]:
    """States from which a restore may enter ``target`` (empty for ``start_requested``)."""
    return _RESTORE_ALLOWED_FROM.get(target, frozenset())


def restore_can_move(current: RestoreState | str, target: RestoreState | str) -> bool:
    return RestoreState(current) in restore_sources_of(RestoreState(target))


def parse_restore_state(value: str) -> RestoreState | None:
    try:
        return RestoreState(value)
    except ValueError:
        return None


# -- Cleanups (spec §14.3, OQ-12) ------------------------------------------------------------
# No preparing, skipped or missed; a scheduled start needs the agent's own X-Agent-Id.


class CleanupState(StrEnum):
    START_REQUESTED = "start_requested"
    START_SCHEDULED = "start_scheduled"
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    STOP_REQUESTED = "stop_requested"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    STOPPED = "stopped"


C = CleanupState

CLEANUP_FINAL_STATES: frozenset[CleanupState] = frozenset(
    {C.COMPLETED, C.COMPLETED_WITH_ERRORS, C.FAILED, C.STOPPED}
)
CLEANUP_START_STATES: frozenset[CleanupState] = frozenset({C.START_REQUESTED, C.START_SCHEDULED})
CLEANUP_RUNNING_STATES: frozenset[CleanupState] = frozenset({C.QUEUED, C.IN_PROGRESS})
CLEANUP_ACTIVE_STATES: frozenset[CleanupState] = frozenset(set(CleanupState) - CLEANUP_FINAL_STATES)

# Transitions c2-c7: target state -> the states it may be entered from.
_CLEANUP_ALLOWED_FROM: dict[CleanupState, frozenset[CleanupState]] = {
    C.QUEUED: CLEANUP_START_STATES,
    C.IN_PROGRESS: frozenset({C.QUEUED}),
    C.STOP_REQUESTED: frozenset(CLEANUP_START_STATES | CLEANUP_RUNNING_STATES),
    C.COMPLETED: frozenset({C.IN_PROGRESS, C.STOP_REQUESTED}),
    C.COMPLETED_WITH_ERRORS: frozenset({C.IN_PROGRESS, C.STOP_REQUESTED}),
    C.FAILED: frozenset(CLEANUP_START_STATES | CLEANUP_RUNNING_STATES | {C.STOP_REQUESTED}),
    C.STOPPED: frozenset({C.IN_PROGRESS, C.STOP_REQUESTED}),
}

CLEANUP_AGENT_SETTABLE: frozenset[CleanupState] = frozenset(
    CLEANUP_RUNNING_STATES | CLEANUP_FINAL_STATES
)
CLEANUP_USER_SETTABLE: frozenset[CleanupState] = frozenset({C.STOP_REQUESTED})

CLEANUP_STATE_EVENT: dict[CleanupState, str] = {
    C.START_REQUESTED: "cleanup_start_request",
    C.START_SCHEDULED: "cleanup_start_request",
    C.QUEUED: "cleanup_queued",
    C.IN_PROGRESS: "cleanup_in_progress",
    C.STOP_REQUESTED: "cleanup_stop_request",
    C.COMPLETED: "cleanup_completed",
    C.COMPLETED_WITH_ERRORS: "cleanup_completed",
    C.FAILED: "cleanup_failed",
    C.STOPPED: "cleanup_stopped",
}
CLEANUP_EVENTS_WITH_REQUEST_ID = frozenset({"cleanup_start_request", "cleanup_stop_request"})

CLEANUP_FINAL_CONFLICT_MESSAGE = (
    "Modifying a cleanup that is already in a state of "
    "['completed', 'completed_with_errors', 'failed', 'stopped'] is not allowed."
)


def cleanup_sources_of(target: CleanupState) -> frozenset[CleanupState]:
    """States from which a cleanup may enter ``target`` (empty for the two start states)."""
    return _CLEANUP_ALLOWED_FROM.get(target, frozenset())


def cleanup_can_move(current: CleanupState | str, target: CleanupState | str) -> bool:
    return CleanupState(current) in cleanup_sources_of(CleanupState(target))


def parse_cleanup_state(value: str) -> CleanupState | None:
    try:
        return CleanupState(value)
    except ValueError:
        return None
