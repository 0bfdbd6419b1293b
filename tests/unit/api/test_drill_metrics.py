"""/metrics per configuration (issue 14): the newest ended drill of each live configuration,
its age, result, recovery time and throughput, labelled by configuration id only; a deleted
configuration has no series; how many drill schedules are due."""

from __future__ import annotations

import msgspec
import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from cloudbackup.domain.drill_run import execute_drill
from cloudbackup.domain.drill_schedules import DrillScheduleService
from cloudbackup.queue.publishing import CeleryDispatcher
from cloudbackup.server import create_app
from factories import rows
from factories.api import PROJECT, headers, token
from factories.runs import backed_up
from factories.trees import make_tree

GAUGES = (
    "cloudbackup_drill_last_age_seconds",
    "cloudbackup_drill_last_passed",
    "cloudbackup_drill_last_duration_seconds",
    "cloudbackup_drill_last_bytes_per_second",
)


def _drill(client, secret, backup_id, db, settings, expected):
    started = client.post(f"/v2/{PROJECT}/backups/{backup_id}/drills", headers=headers(secret))
    assert started.status_code == 201, started.text
    assert execute_drill(db, settings, started.json()["id"]) == expected
    return client.get(started.headers["location"], headers=headers(secret)).json()


def _scrape(settings, db) -> dict[str, dict[str, float]]:
    """A fresh app (so no cached figures): gauge name -> configuration id -> value."""
    public = msgspec.structs.replace(settings, metrics_public=True)
    app = create_app(public, database=db, dispatcher=CeleryDispatcher.from_settings(public))
    with TestClient(app=app) as api:
        text = api.get("/metrics").text
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("cloudbackup_drill"):
            for sample in family.samples:
                found.setdefault(sample.name, {})[sample.labels.get("configuration_id", "")] = (
                    sample.value
                )
    return found


@pytest.fixture
def unrestorable(db):
    """A configuration whose backup names a snapshot no vault holds: its drills fail."""
    config = rows.configuration(db, rows.agent(db))
    return config, rows.backup(db, config.id, restorable=True, snapshot_id=7)


def test_each_configurations_newest_drill_is_a_series_of_its_own(
    client, db, settings, tmp_path, unrestorable
):
    assert not {k: v for k, v in _scrape(settings, db).items() if k in GAUGES}  # none yet
    secret = token(db)
    tree = make_tree(tmp_path / "src", files=4, size=10_000, with_excluded=False)
    _, good_config, good = backed_up(db, settings, tree.root)
    bad_on_good_config = rows.backup(db, good_config.id, restorable=True, snapshot_id=9)
    _drill(client, secret, bad_on_good_config.id, db, settings, "failed")
    newest = _drill(client, secret, good.id, db, settings, "passed")  # the newest one counts
    bad_config, bad = unrestorable
    failed = _drill(client, secret, bad.id, db, settings, "failed")

    found = _scrape(settings, db)
    assert set(found["cloudbackup_drill_last_passed"]) == {good_config.id, bad_config.id}
    assert found["cloudbackup_drill_last_passed"] == {good_config.id: 1.0, bad_config.id: 0.0}
    durations = found["cloudbackup_drill_last_duration_seconds"]
    assert durations[good_config.id] == newest["duration_seconds"] > 0
    assert failed["duration_seconds"] is None and bad_config.id not in durations  # no RTO
    speeds = found["cloudbackup_drill_last_bytes_per_second"]
    assert speeds == {good_config.id: newest["bytes_per_second"]}
    ages = found["cloudbackup_drill_last_age_seconds"]
    assert set(ages) == {good_config.id, bad_config.id}
    assert all(0 <= age < 60 for age in ages.values())


def test_a_deleted_configuration_has_no_series_and_due_schedules_are_counted(
    client, db, settings, unrestorable
):
    secret = token(db)
    config, backup = unrestorable
    _drill(client, secret, backup.id, db, settings, "failed")
    DrillScheduleService(db).put(PROJECT, config.id, 24)  # due at once
    found = _scrape(settings, db)
    assert found["cloudbackup_drill_last_passed"] == {config.id: 0.0}
    assert found["cloudbackup_drill_schedules_due"] == {"": 1.0}

    deleted = client.delete(f"/v2/{PROJECT}/configurations/{config.id}", headers=headers(secret))
    assert deleted.status_code == 204
    after = _scrape(settings, db)
    assert not {name: after[name] for name in GAUGES if after.get(name)}
