"""The restore (spec §14.2) and cleanup (§14.3) state machines: every pair of states, checked
against the transition tables written out here (r1-r8, c1-c8)."""

from __future__ import annotations

import itertools

import pytest

from cloudbackup.domain.states import (
    CLEANUP_EVENTS_WITH_REQUEST_ID,
    CLEANUP_FINAL_CONFLICT_MESSAGE,
    CLEANUP_FINAL_STATES,
    CLEANUP_STATE_EVENT,
    RESTORE_EVENTS_WITH_REQUEST_ID,
    RESTORE_FINAL_CONFLICT_MESSAGE,
    RESTORE_FINAL_STATES,
    RESTORE_STATE_EVENT,
    CleanupState,
    RestoreState,
    cleanup_can_move,
    parse_cleanup_state,
    parse_restore_state,
    restore_can_move,
)

R = RestoreState
C = CleanupState

RESTORE_MOVES = {
    (R.START_REQUESTED, R.QUEUED),  # r2
    (R.QUEUED, R.PREPARING),  # r3
    (R.PREPARING, R.IN_PROGRESS),
    (R.QUEUED, R.IN_PROGRESS),
    *((R.IN_PROGRESS, final) for final in RESTORE_FINAL_STATES),  # r4
    *((s, R.FAILED) for s in (R.START_REQUESTED, R.QUEUED, R.PREPARING)),  # r5
    *((s, R.STOP_REQUESTED) for s in (R.START_REQUESTED, R.QUEUED, R.PREPARING, R.IN_PROGRESS)),
    *((R.STOP_REQUESTED, final) for final in RESTORE_FINAL_STATES),  # r7
}

CLEANUP_MOVES = {
    (C.START_REQUESTED, C.QUEUED),  # c2
    (C.START_SCHEDULED, C.QUEUED),
    (C.QUEUED, C.IN_PROGRESS),  # c3
    *((C.IN_PROGRESS, final) for final in CLEANUP_FINAL_STATES),  # c4
    *((s, C.FAILED) for s in (C.START_REQUESTED, C.START_SCHEDULED, C.QUEUED)),  # c5
    *(
        (s, C.STOP_REQUESTED)
        for s in (C.START_REQUESTED, C.START_SCHEDULED, C.QUEUED, C.IN_PROGRESS)
    ),  # c6
    *((C.STOP_REQUESTED, final) for final in CLEANUP_FINAL_STATES),  # c7
}


@pytest.mark.parametrize(("source", "target"), list(itertools.product(RestoreState, repeat=2)))
def test_restore_moves_are_exactly_the_table(source, target):
    assert restore_can_move(source, target) == ((source, target) in RESTORE_MOVES)


@pytest.mark.parametrize(("source", "target"), list(itertools.product(CleanupState, repeat=2)))
def test_cleanup_moves_are_exactly_the_table(source, target):
    assert cleanup_can_move(source, target) == ((source, target) in CLEANUP_MOVES)


def test_value_sets_final_states_and_messages():
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
    assert {s.value for s in CleanupState} == {
        "start_requested",
        "start_scheduled",
        "queued",
        "in_progress",
        "stop_requested",
        "completed",
        "completed_with_errors",
        "failed",
        "stopped",
    }
    final = {"completed", "completed_with_errors", "failed", "stopped"}
    assert {s.value for s in RESTORE_FINAL_STATES} == final
    assert {s.value for s in CLEANUP_FINAL_STATES} == final
    assert RESTORE_FINAL_CONFLICT_MESSAGE == (
        "Modifying a restore that is already in a state of "
        "['completed', 'completed_with_errors', 'failed', 'stopped'] is not allowed."
    )
    assert CLEANUP_FINAL_CONFLICT_MESSAGE == (
        "Modifying a cleanup that is already in a state of "
        "['completed', 'completed_with_errors', 'failed', 'stopped'] is not allowed."
    )
    assert parse_restore_state("start_scheduled") is None  # restores have no scheduled start
    assert parse_restore_state("skipped") is None and parse_restore_state("missed") is None
    assert parse_cleanup_state("preparing") is None  # cleanups have no preparing
    assert parse_cleanup_state("stopped") is C.STOPPED


def test_state_to_event_maps_of_spec_14_9():
    assert {s.value: e for s, e in RESTORE_STATE_EVENT.items()} == {
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
    assert {s.value: e for s, e in CLEANUP_STATE_EVENT.items()} == {
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
    assert {"restore_start_request", "restore_stop_request"} == RESTORE_EVENTS_WITH_REQUEST_ID
    assert {"cleanup_start_request", "cleanup_stop_request"} == CLEANUP_EVENTS_WITH_REQUEST_ID
