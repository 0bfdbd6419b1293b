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


@pytest.mark.parametrize(("patch", "counter"), PATCHES)
def test_numbers_wider_than_the_columns_are_a_400(patch, counter):
    assert "at most" in _problems(patch, (counter, 2**63))[0]
    assert _parse(patch, (counter, 2**63 - 1)).counters == {counter[1:]: 2**63 - 1}


def test_snapshot_ids_and_error_counts_wider_than_32_bits_are_a_400():
    assert "at most" in _problems(BACKUP_PATCH, ("/snapshot_id", 2**31))[0]
    assert "at most" in _problems(CLEANUP_PATCH, ("/snapshot_ids", [1, 2**31]))[0]
    errors = {"count": 2**31, "reason": "r", "diagnostics": "d", "list": []}
    assert "/errors/count" in _problems(BACKUP_PATCH, ("/errors", errors))[0]
    item = {"index": 2**40, "path": "/a", "type": "file_unreadable"}
    errors = {"count": 1, "reason": "r", "diagnostics": "d", "list": [item]}
    assert "/errors/list/index" in _problems(RESTORE_PATCH, ("/errors", errors))[0]


def test_a_huge_counter_through_the_api_is_a_400_that_changes_nothing(client, db):
    from cloudbackup.store.tables import utcnow
    from factories import rows
    from factories.api import headers, token

    agent = rows.agent(db)
    backup = rows.backup(
        db, rows.configuration(db, agent).id, state="in_progress", heartbeat_at=utcnow()
    )
    secret = token(db)
    body = [{"op": "replace", "path": "/bytes_backed_up", "value": 2**64}]
    answer = client.patch(
        f"/v2/{backup.project_id}/backups/{backup.id}",
        content=msgspec.json.encode(body),
        headers={
            **headers(secret),
            "Content-Type": "application/json-patch+json",
            "X-Agent-Id": agent.id,
        },
    )
    assert answer.status_code == 400, answer.text
    assert "may be at most" in answer.text
    got = client.get(f"/v2/{backup.project_id}/backups/{backup.id}", headers=headers(secret))
    assert got.json()["bytes_backed_up"] == 0
