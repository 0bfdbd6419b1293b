"""The one JSON Patch parser of the run resources (B4, R4, C4), the same rules for each kind."""

from __future__ import annotations

from types import SimpleNamespace

import msgspec
import pytest

from cloudbackup.api.schemas.backups import BACKUP_PATCH
from cloudbackup.api.schemas.cleanups import CLEANUP_PATCH
from cloudbackup.api.schemas.restores import RESTORE_PATCH
from cloudbackup.domain.errors import InvalidInput

PATCHES = [
    pytest.param(BACKUP_PATCH, "/files_backed_up", id="backup"),
    pytest.param(RESTORE_PATCH, "/files_restored", id="restore"),
    pytest.param(CLEANUP_PATCH, "/bytes_before", id="cleanup"),
]
REQUEST = SimpleNamespace(headers={"content-type": "application/json-patch+json"})


def _parse(patch, *ops):
    body = msgspec.json.encode([{"op": "replace", "path": p, "value": v} for p, v in ops])
    return patch.parse(REQUEST, body)


def _problems(patch, *ops) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        _parse(patch, *ops)
    return caught.value.errors


@pytest.mark.parametrize(("patch", "counter"), PATCHES)
def test_a_report_becomes_one_update(patch, counter):
    update = _parse(
        patch,
        ("/state", "in_progress"),
        (counter, 12),
        ("/started_time", "2026-12-03T10:00:00Z"),
    )
    assert update.state == "in_progress"
    assert update.counters == {counter[1:]: 12}
    assert update.started_time.year == 2026


@pytest.mark.parametrize(("patch", "counter"), PATCHES)
def test_what_no_patch_may_write_is_a_400(patch, counter):
    assert "cannot be changed" in _problems(patch, ("/id", "x"))[0]
    assert "must not be negative" in _problems(patch, (counter, -1))[0]
    assert _problems(patch, (counter, "12"))[0].startswith(counter)  # no coercion (OQ-1)
    assert "ISO 8601" in _problems(patch, ("/ended_time", "yesterday"))[0]
    for start in patch.machine.starts:
        assert "cannot be set" in _problems(patch, ("/state", start.value))[0]
    assert "cannot be set" in _problems(patch, ("/state", "exploded"))[0]


@pytest.mark.parametrize(("patch", "counter"), PATCHES)
def test_a_stop_request_parses_for_every_kind(patch, counter):
    assert _parse(patch, ("/state", "stop_requested")).state == "stop_requested"


def test_only_the_scheduler_decides_a_backup_was_missed():
    assert "cannot be set" in _problems(BACKUP_PATCH, ("/state", "missed"))[0]


def test_each_kind_has_its_own_paths():
    assert _parse(BACKUP_PATCH, ("/snapshot_id", 3)).snapshot_id == 3
    assert _parse(CLEANUP_PATCH, ("/snapshot_ids", [1, 2])).snapshot_ids == [1, 2]
    assert "cannot be changed" in _problems(RESTORE_PATCH, ("/snapshot_id", 3))[0]
    assert "positive" in _problems(CLEANUP_PATCH, ("/snapshot_ids", [0]))[0]
