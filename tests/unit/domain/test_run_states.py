"""The three run state machines (spec §14.1-§14.3) on their one mechanism: every pair of states
checked against the transition tables written out here (b3-b13, r1-r8, c1-c8), and the events,
messages and settable states of each kind."""

from __future__ import annotations

import itertools

import pytest

from cloudbackup.domain.run_states import (
    BACKUP_MACHINE,
    CLEANUP_MACHINE,
    RESTORE_MACHINE,
    BackupState,
    CleanupState,
    DrillState,
    RestoreState,
)

B = BackupState
R = RestoreState
C = CleanupState
B_FINAL = (B.COMPLETED, B.COMPLETED_WITH_ERRORS, B.FAILED, B.STOPPED, B.SKIPPED, B.MISSED)
R_FINAL = (R.COMPLETED, R.COMPLETED_WITH_ERRORS, R.FAILED, R.STOPPED)
C_FINAL = (C.COMPLETED, C.COMPLETED_WITH_ERRORS, C.FAILED, C.STOPPED)

BACKUP_MOVES = {
    (B.START_REQUESTED, B.QUEUED),
    (B.START_SCHEDULED, B.QUEUED),
    (B.QUEUED, B.PREPARING),
    (B.QUEUED, B.IN_PROGRESS),
    (B.PREPARING, B.IN_PROGRESS),
    *((s, B.STOP_REQUESTED) for s in (B.START_REQUESTED, B.START_SCHEDULED, B.QUEUED)),
    (B.PREPARING, B.STOP_REQUESTED),
    (B.IN_PROGRESS, B.STOP_REQUESTED),
    *((s, f) for s in (B.IN_PROGRESS, B.STOP_REQUESTED) for f in B_FINAL[:4] if f is not B.FAILED),
    *(
        (s, B.FAILED)
        for s in (
            B.START_REQUESTED,
            B.START_SCHEDULED,
            B.QUEUED,
            B.PREPARING,
            B.IN_PROGRESS,
            B.STOP_REQUESTED,
        )
    ),
    *((s, B.SKIPPED) for s in (B.START_REQUESTED, B.START_SCHEDULED, B.QUEUED)),
    (B.START_SCHEDULED, B.MISSED),
}

RESTORE_MOVES = {
    (R.START_REQUESTED, R.QUEUED),  # r2
    (R.QUEUED, R.PREPARING),  # r3
    (R.PREPARING, R.IN_PROGRESS),
    (R.QUEUED, R.IN_PROGRESS),
    *((R.IN_PROGRESS, final) for final in R_FINAL),  # r4
    *((s, R.FAILED) for s in (R.START_REQUESTED, R.QUEUED, R.PREPARING)),  # r5
    *((s, R.STOP_REQUESTED) for s in (R.START_REQUESTED, R.QUEUED, R.PREPARING, R.IN_PROGRESS)),
    *((R.STOP_REQUESTED, final) for final in R_FINAL),  # r7
}

CLEANUP_MOVES = {
    (C.START_REQUESTED, C.QUEUED),  # c2
    (C.START_SCHEDULED, C.QUEUED),
    (C.QUEUED, C.IN_PROGRESS),  # c3
    *((C.IN_PROGRESS, final) for final in C_FINAL),  # c4
    *((s, C.FAILED) for s in (C.START_REQUESTED, C.START_SCHEDULED, C.QUEUED)),  # c5
    *(
        (s, C.STOP_REQUESTED)
        for s in (C.START_REQUESTED, C.START_SCHEDULED, C.QUEUED, C.IN_PROGRESS)
    ),  # c6
    *((C.STOP_REQUESTED, final) for final in C_FINAL),  # c7
}

KINDS = [
    pytest.param(BACKUP_MACHINE, BACKUP_MOVES, id="backup"),
    pytest.param(RESTORE_MACHINE, RESTORE_MOVES, id="restore"),
    pytest.param(CLEANUP_MACHINE, CLEANUP_MOVES, id="cleanup"),
]


@pytest.mark.parametrize(("machine", "moves"), KINDS)
def test_moves_are_exactly_the_table(machine, moves):
    for source, target in itertools.product(machine.states, repeat=2):
        assert machine.can_move(source, target) == ((source, target) in moves), (source, target)


@pytest.mark.parametrize(("machine", "moves"), KINDS)
def test_no_move_leaves_a_final_state_and_no_move_enters_a_start(machine, moves):
    assert not any(source in machine.final for source, _ in moves)
    assert not any(target in machine.starts for _, target in moves)
    assert machine.active == frozenset(machine.states) - machine.final


def test_state_values_and_final_states():
    assert len(BackupState) == 12
    assert BACKUP_MACHINE.final == frozenset(B_FINAL)
    assert [s.value for s in RestoreState] == [
        "start_requested",
        "queued",
        "preparing",
        "in_progress",
        "stop_requested",
        "completed",
        "completed_with_errors",
        "failed",
        "stopped",
    ]
    assert {s.value for s in CleanupState} == {s.value for s in RestoreState} - {"preparing"} | {
        "start_scheduled"
    }
    assert RESTORE_MACHINE.final == frozenset(R_FINAL)
    assert CLEANUP_MACHINE.final == frozenset(C_FINAL)


def test_every_state_is_its_wire_value_in_the_order_of_the_spec():
    """What the API writes and the tables hold, whatever form declares the states."""
    assert [(s.name, s.value) for s in BackupState] == [
        (value.upper(), value)
        for value in (
            "start_requested",
            "start_scheduled",
            "queued",
            "preparing",
            "in_progress",
            "stop_requested",
            "completed",
            "completed_with_errors",
            "failed",
            "stopped",
            "skipped",
            "missed",
        )
    ]
    assert [s.value for s in DrillState] == [
        "start_requested",
        "queued",
        "in_progress",
        "stop_requested",
        "passed",
        "failed",
        "stopped",
    ]
    assert BackupState("completed_with_errors") is BackupState.COMPLETED_WITH_ERRORS
    assert str(CleanupState.START_SCHEDULED) == "start_scheduled"
    with pytest.raises(ValueError, match="'skipped' is not a valid RestoreState"):
        RestoreState("skipped")


def test_final_conflict_messages_are_the_specs_byte_for_byte():
    assert BACKUP_MACHINE.final_conflict == (
        "Modifying a backup that is already in a state of "
        "['completed', 'completed_with_errors', 'failed', 'stopped', 'skipped', 'missed']"
        " is not allowed."
    )
    assert RESTORE_MACHINE.final_conflict == (
        "Modifying a restore that is already in a state of "
        "['completed', 'completed_with_errors', 'failed', 'stopped'] is not allowed."
    )
    assert CLEANUP_MACHINE.final_conflict == (
        "Modifying a cleanup that is already in a state of "
        "['completed', 'completed_with_errors', 'failed', 'stopped'] is not allowed."
    )


def test_parse_and_final():
    assert BACKUP_MACHINE.parse("completed") is B.COMPLETED
    assert BACKUP_MACHINE.is_final("completed") and not BACKUP_MACHINE.is_final("in_progress")
    assert BACKUP_MACHINE.parse("Completed") is None and BACKUP_MACHINE.parse("") is None
    assert RESTORE_MACHINE.parse("start_scheduled") is None  # restores have no scheduled start
    assert RESTORE_MACHINE.parse("skipped") is None and RESTORE_MACHINE.parse("missed") is None
    assert CLEANUP_MACHINE.parse("preparing") is None  # cleanups have no preparing
    assert CLEANUP_MACHINE.parse("stopped") is C.STOPPED


def test_who_may_set_what():
    for machine in (BACKUP_MACHINE, RESTORE_MACHINE, CLEANUP_MACHINE):
        assert machine.user_settable == {machine.stop_requested}
        assert not machine.agent_settable & machine.starts
        assert machine.stop_requested not in machine.agent_settable
    assert BACKUP_MACHINE.agent_settable == {
        B.QUEUED,
        B.PREPARING,
        B.IN_PROGRESS,
        *B_FINAL[:5],
    }  # not `missed`: only the scheduler decides that
    assert RESTORE_MACHINE.agent_settable == {R.QUEUED, R.PREPARING, R.IN_PROGRESS, *R_FINAL}
    assert CLEANUP_MACHINE.agent_settable == {C.QUEUED, C.IN_PROGRESS, *C_FINAL}


def test_state_to_event_maps_of_spec_14_9():
    assert {s.value: e for s, e in BACKUP_MACHINE.events.items()} == {
        "start_requested": "backup_start_request",
        "start_scheduled": "backup_start_request",
        "queued": "backup_queued",
        "preparing": "backup_preparing",
        "in_progress": "backup_in_progress",
        "stop_requested": "backup_stop_request",
        "completed": "backup_completed",
        "completed_with_errors": "backup_completed",
        "failed": "backup_failed",
        "stopped": "backup_stopped",
        "skipped": "backup_skipped",
        "missed": "backup_missed",
    }
    assert {s.value: e for s, e in RESTORE_MACHINE.events.items()} == {
        "start_requested": "restore_start_request",
        "queued": "restore_queued",
        "preparing": "restore_preparing",
        "in_progress": "restore_in_progress",
        "stop_requested": "restore_stop_request",
        "completed": "restore_completed",
        "completed_with_errors": "restore_completed",
        "failed": "restore_failed",
        "stopped": "restore_stopped",
    }
    assert {s.value: e for s, e in CLEANUP_MACHINE.events.items()} == {
        "start_requested": "cleanup_start_request",
        "start_scheduled": "cleanup_start_request",
        "queued": "cleanup_queued",
        "in_progress": "cleanup_in_progress",
        "stop_requested": "cleanup_stop_request",
        "completed": "cleanup_completed",
        "completed_with_errors": "cleanup_completed",
        "failed": "cleanup_failed",
        "stopped": "cleanup_stopped",
    }
    assert BACKUP_MACHINE.events_with_request_id == {
        "backup_start_request",
        "backup_stop_request",
        "backup_skipped",
        "backup_missed",
    }
    assert RESTORE_MACHINE.events_with_request_id == {
        "restore_start_request",
        "restore_stop_request",
    }
    assert CLEANUP_MACHINE.events_with_request_id == {
        "cleanup_start_request",
        "cleanup_stop_request",
    }
