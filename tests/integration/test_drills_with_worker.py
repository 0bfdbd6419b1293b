"""A restore drill through a real Celery worker (PostgreSQL + Redis): a tree backed up, a drill
POSTed over HTTP, the worker restores it into scratch, compares it and the drill reads back
``passed`` with its counts; the scratch folder is gone."""

from __future__ import annotations

import pytest

from cloudbackup.domain.drill_run import scratch_folder
from factories.api import headers
from factories.trees import make_tree

pytestmark = pytest.mark.services
DRILL_FINAL = {"passed", "failed", "stopped"}


def test_a_drill_posted_over_http_passes_on_a_worker(
    api, completed_backup, wait_for, integration_settings, tmp_path
):
    tree = make_tree(tmp_path / "src", files=20, size=30_000, with_excluded=False)
    agent, _, secret, backup = completed_backup(tree.root)

    started = api.post(
        f"/v2/{agent.project_id}/backups/{backup['id']}/drills", headers=headers(secret)
    )
    assert started.status_code == 201, started.text
    drill = wait_for(
        api,
        started.headers["location"],
        headers(secret),
        predicate=lambda body: body["state"] in DRILL_FINAL,
    )
    assert drill["state"] == "passed", drill
    assert (drill["files_checked"], drill["bytes_checked"]) == (tree.files, tree.bytes)
    assert drill["mismatches"] == 0 and drill["bytes_per_second"] > 0
    assert not scratch_folder(integration_settings, drill["id"]).exists()
    listed = api.get(
        f"/v2/{agent.project_id}/backups/{backup['id']}/drills", headers=headers(secret)
    ).json()
    assert [d["id"] for d in listed["drills"]] == [drill["id"]]
