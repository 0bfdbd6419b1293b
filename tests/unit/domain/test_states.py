"""The backup state machine of spec §14.1."""

from __future__ import annotations

import pytest

from cloudbackup.domain.states import (
    FINAL_CONFLICT_MESSAGE,
    FINAL_STATES,
    FINAL_STATES_MESSAGE_ORDER,
    BackupState,
    can_move,
    is_final,
    parse_state,
)

S = BackupState


def test_there_are_twelve_states_and_six_final():
    assert len(BackupState) == 12
    assert {s.value for s in FINAL_STATES} == set(FINAL_STATES_MESSAGE_ORDER)
    assert str(list(FINAL_STATES_MESSAGE_ORDER)) in FINAL_CONFLICT_MESSAGE


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (S.START_REQUESTED, S.QUEUED),
        (S.START_SCHEDULED, S.QUEUED),
        (S.QUEUED, S.PREPARING),
        (S.PREPARING, S.IN_PROGRESS),
        (S.QUEUED, S.IN_PROGRESS),
        (S.IN_PROGRESS, S.COMPLETED),
        (S.IN_PROGRESS, S.COMPLETED_WITH_ERRORS),
        (S.IN_PROGRESS, S.FAILED),
        (S.IN_PROGRESS, S.STOPPED),
        (S.PREPARING, S.FAILED),
        (S.START_REQUESTED, S.SKIPPED),
        (S.QUEUED, S.SKIPPED),
        (S.START_SCHEDULED, S.MISSED),
        (S.START_REQUESTED, S.STOP_REQUESTED),
        (S.IN_PROGRESS, S.STOP_REQUESTED),
        (S.STOP_REQUESTED, S.STOPPED),
        (S.STOP_REQUESTED, S.COMPLETED),
    ],
)
def test_allowed_moves(source, target):
    assert can_move(source, target)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        *[(final, other) for final in FINAL_STATES for other in BackupState],
        (S.IN_PROGRESS, S.QUEUED),
        (S.IN_PROGRESS, S.PREPARING),
        (S.PREPARING, S.QUEUED),
        (S.START_REQUESTED, S.COMPLETED),
        (S.START_REQUESTED, S.MISSED),
        (S.IN_PROGRESS, S.SKIPPED),
        (S.STOP_REQUESTED, S.STOP_REQUESTED),
        (S.QUEUED, S.START_REQUESTED),
    ],
)
def test_forbidden_moves(source, target):
    assert not can_move(source, target)


def test_parse_and_final():
    assert parse_state("completed") is S.COMPLETED and is_final("completed")
    assert parse_state("Completed") is None and parse_state("") is None
    assert not is_final("in_progress")
