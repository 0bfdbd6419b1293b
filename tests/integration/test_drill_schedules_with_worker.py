"""A scheduled drill through a real Celery worker (PostgreSQL + Redis): a configuration backed
up, its drill schedule PUT over HTTP, the beat's drill tick starts the due drill on the
scheduled lane, the worker passes it, and the schedule shows it with the next due time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cloudbackup.api.schemas.times import parse_iso
from cloudbackup.domain.drill_run import scratch_folder
from cloudbackup.domain.drill_schedules import fire_due_drills
from cloudbackup.store.tables import utcnow
from factories.api import headers
from factories.trees import make_tree

pytestmark = pytest.mark.services
DRILL_FINAL = {"passed", "failed", "stopped"}


def test_the_beat_starts_a_due_drill_that_passes_on_a_worker(
    api, pg_db, completed_backup, dispatcher, wait_for, integration_settings, tmp_path
):
    tree = make_tree(tmp_path / "src", files=12, size=30_000, with_excluded=False)
    agent, config, secret, backup = completed_backup(tree.root)
    url = f"/v2/{agent.project_id}/configurations/{config.id}/drill-schedule"
    assert api.put(url, json={"every_hours": 168}, headers=headers(secret)).status_code == 201

    report = fire_due_drills(pg_db, dispatcher.scheduled())  # what beat's schedule tick runs
    assert report.started == 1, report
    listed = api.get(
        f"/v2/{agent.project_id}/backups/{backup['id']}/drills", headers=headers(secret)
    ).json()["drills"]
    [started] = listed
    drill_url = next(link["href"] for link in started["links"] if link["rel"] == "full")
    drill = wait_for(
        api, drill_url, headers(secret), predicate=lambda body: body["state"] in DRILL_FINAL
    )
    assert drill["state"] == "passed", drill
    assert (drill["files_checked"], drill["bytes_checked"]) == (tree.files, tree.bytes)
    assert not scratch_folder(integration_settings, drill["id"]).exists()

    shown = api.get(url, headers=headers(secret)).json()
    assert shown["last_drill"]["id"] == drill["id"] and shown["last_drill"]["state"] == "passed"
    assert shown["last_drill"]["duration_seconds"] == drill["duration_seconds"] > 0
    due = shown["next_due_time"]
    assert timedelta(days=6, hours=23) < parse_iso(due) - utcnow() <= timedelta(days=7)
    assert fire_due_drills(pg_db, dispatcher.scheduled()).started == 0  # not due again yet
