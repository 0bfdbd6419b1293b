"""Restore drills over HTTP (issue 14, an API extension): POST .../backups/{id}/drills is 201
with the drill and its Location, the backup's list pages like the other lists, one drill and
its errors read back, roles like restores, another project's backup 404, a backup that is not
restorable 409; what the worker publishes is a ``drill`` task."""

from __future__ import annotations

import time

import pytest

from cloudbackup.domain.drill_run import execute_drill
from factories import rows
from factories.api import OTHER_PROJECT, PROJECT, headers, token
from factories.runs import backed_up
from factories.trees import make_tree


@pytest.fixture
def backup(db):
    agent = rows.agent(db)
    config = rows.configuration(db, agent)
    return rows.backup(db, config.id, restorable=True, snapshot_id=1)


def _start(client, secret, backup_id, project_id=PROJECT):
    return client.post(f"/v2/{project_id}/backups/{backup_id}/drills", headers=headers(secret))


def test_a_creator_starts_a_drill_201_with_its_location(client, db, backup):
    response = _start(client, token(db, role="creator"), backup.id)
    assert response.status_code == 201, response.text
    drill = response.json()
    assert drill["state"] == "start_requested" and drill["project_id"] == PROJECT
    assert drill["backup"]["id"] == backup.id and drill["snapshot_id"] == 1
    assert (drill["files_checked"], drill["bytes_checked"], drill["mismatches"]) == (0, 0, 0)
    assert drill["duration_seconds"] is None and drill["bytes_per_second"] is None
    rels = {link["rel"]: link["href"] for link in drill["links"]}
    assert rels["self"].endswith(f"/v2/{PROJECT}/drills/{drill['id']}")
    assert rels["events"].endswith(f"/v2/{PROJECT}/drills/{drill['id']}/events")
    assert response.headers["location"] == rels["self"]
    one = client.get(rels["self"], headers=headers(token(db, role="observer")))
    assert one.status_code == 200 and one.json() == drill


def test_an_observer_reads_but_may_not_start(client, db, backup):
    observer = token(db, role="observer")
    refused = _start(client, observer, backup.id)
    assert refused.status_code == 403, refused.text
    listed = client.get(f"/v2/{PROJECT}/backups/{backup.id}/drills", headers=headers(observer))
    assert listed.status_code == 200 and listed.json() == {"drills": [], "links": []}


def test_another_projects_backup_or_drill_is_404(client, db, backup):
    mine = _start(client, token(db), backup.id).json()
    other = token(db, OTHER_PROJECT)
    assert _start(client, other, backup.id, OTHER_PROJECT).status_code == 404
    assert _start(client, token(db), "no-such-backup").status_code == 404
    listed = client.get(f"/v2/{OTHER_PROJECT}/backups/{backup.id}/drills", headers=headers(other))
    assert listed.status_code == 404
    seen = client.get(f"/v2/{OTHER_PROJECT}/drills/{mine['id']}", headers=headers(other))
    assert seen.status_code == 404 and seen.json()["message"] == "Drill not found."


def test_a_backup_that_is_not_restorable_is_409(client, db, backup):
    running = rows.backup(db, backup.configuration_id, state="in_progress", restorable=False)
    response = _start(client, token(db), running.id)
    assert response.status_code == 409, response.text
    assert "not restorable" in response.json()["message"]


def test_the_backup_list_pages_like_the_other_lists(client, db, backup):
    secret = token(db)
    started = [_start(client, secret, backup.id).json()["id"] for _ in range(3)]
    url = f"/v2/{PROJECT}/backups/{backup.id}/drills"
    first = client.get(f"{url}?limit=2", headers=headers(secret)).json()
    assert [d["id"] for d in first["drills"]] == [started[2], started[1]]  # newest first
    assert {link["rel"] for link in first["drills"][0]["links"]} == {"full", "events"}
    [link] = first["links"]
    assert link["rel"] == "next" and f"marker={started[1]}" in link["href"]
    rest = client.get(link["href"], headers=headers(secret)).json()
    assert [d["id"] for d in rest["drills"]] == [started[0]]
    bad = client.get(f"{url}?limit=0", headers=headers(secret))
    assert bad.status_code == 400
    # Another backup's drills are not in this list.
    other = rows.backup(db, backup.configuration_id, restorable=True, snapshot_id=2)
    _start(client, secret, other.id)
    assert len(client.get(url, headers=headers(secret)).json()["drills"]) == 3


def test_a_stop_request_ends_an_unclaimed_drill_and_nothing_else_may_be_patched(client, db, backup):
    secret = token(db)
    drill = _start(client, secret, backup.id).json()
    hdrs = {**headers(secret), "Content-Type": "application/json-patch+json"}
    url = f"/v2/{PROJECT}/drills/{drill['id']}"
    passed = [{"op": "replace", "path": "/state", "value": "passed"}]
    assert client.patch(url, json=passed, headers=hdrs).status_code == 400
    counts = [{"op": "replace", "path": "/files_checked", "value": 5}]
    assert client.patch(url, json=counts, headers=hdrs).status_code == 400
    stop = [{"op": "replace", "path": "/state", "value": "stop_requested"}]
    assert client.patch(url, json=stop, headers=hdrs).status_code == 204
    assert client.get(url, headers=headers(secret)).json()["state"] == "stopped"


def test_a_finished_drill_shows_its_figures_errors_and_events(client, db, settings, tmp_path):
    tree = make_tree(tmp_path / "src", files=8, size=20_000, with_excluded=False)
    _, _, done = backed_up(db, settings, tree.root)
    secret = token(db)
    drill = _start(client, secret, done.id).json()
    assert execute_drill(db, settings, drill["id"]) == "passed"
    url = f"/v2/{PROJECT}/drills/{drill['id']}"
    row = client.get(url, headers=headers(secret)).json()
    assert row["state"] == "passed" and row["files_checked"] == tree.files
    assert row["bytes_checked"] == tree.bytes and row["mismatches"] == 0
    assert row["duration_seconds"] > 0 and row["bytes_per_second"] > 0
    errors = client.get(f"{url}/errors", headers=headers(secret)).json()
    assert errors["count"] == 0 and errors["list"] == []
    events = client.get(f"{url}/events", headers=headers(secret)).json()
    names = [e["event"] for e in events["events"] if e["event"] != "drill_progress"]
    assert names == ["drill_start_request", "drill_queued", "drill_in_progress", "drill_passed"]
    # The backup's own v2 event list is unchanged by its drills.
    backup_events = client.get(f"/v2/{PROJECT}/backups/{done.id}/events", headers=headers(secret))
    assert not [e for e in backup_events.json()["events"] if e["event"].startswith("drill")]


def test_metrics_show_the_last_drills_age_result_and_recovery_time(settings, db, tmp_path):
    import msgspec
    from litestar.testing import TestClient

    from cloudbackup.queue.publishing import CeleryDispatcher
    from cloudbackup.server import create_app

    public = msgspec.structs.replace(settings, metrics_public=True)
    app = create_app(public, database=db, dispatcher=CeleryDispatcher.from_settings(public))
    with TestClient(app=app) as api:
        before = api.get("/metrics").text
        assert not _last_drill_samples(before)  # no samples before the first drill
        tree = make_tree(tmp_path / "src", files=4, size=10_000, with_excluded=False)
        _, _, done = backed_up(db, settings, tree.root)
        drill = _start(api, token(db), done.id).json()
        assert execute_drill(db, settings, drill["id"]) == "passed"
        row = api.get(f"/v2/{PROJECT}/drills/{drill['id']}", headers=headers(token(db))).json()
        time.sleep(5.1)  # past the metrics cache
        after = api.get("/metrics").text
    samples = _last_drill_samples(after)
    assert float(samples["cloudbackup_last_drill_passed"]) == 1.0
    assert 0 <= float(samples["cloudbackup_last_drill_age_seconds"]) < 60
    assert float(samples["cloudbackup_last_drill_duration_seconds"]) == row["duration_seconds"]


def _last_drill_samples(text: str) -> dict[str, str]:
    return dict(
        line.split(" ", 1) for line in text.splitlines() if line.startswith("cloudbackup_last")
    )
