"""The ransomware guard through a real Celery worker (PostgreSQL + Redis): a tree backed up,
80% of it rewritten as random bytes, backed up again; the API then lists the anomaly, the
project's event list carries `backup_anomaly`, and an admin dismisses it."""

from __future__ import annotations

import pytest

from cloudbackup.domain.retention import expired_agents
from cloudbackup.store.anomalies import AnomalyRepository
from cloudbackup.store.tables import utcnow
from factories import rows
from factories.api import headers, start_backup, token
from factories.trees import make_text_tree, rewrite_random

pytestmark = pytest.mark.services
JSON_PATCH = "application/json-patch+json"


def test_a_mass_rewrite_shows_up_as_an_anomaly_in_the_api(api, pg_db, worker, wait_for, tmp_path):
    paths = make_text_tree(tmp_path / "src", files=100, size=4000)
    agent = rows.agent(pg_db)
    config = rows.configuration(
        pg_db, agent, inclusions=[{"type": "folder", "path": f"{tmp_path / 'src'}/"}]
    )
    secret = token(pg_db)
    first = wait_for(api, start_backup(api, secret, config.id).headers["location"], headers(secret))
    assert first["state"] == "completed", first
    rewrite_random(paths[:80])
    second = wait_for(
        api, start_backup(api, secret, config.id).headers["location"], headers(secret)
    )
    assert second["state"] == "completed", second

    # The guard runs right after the final state is committed, in the same task.
    listed = wait_for(
        api,
        f"/v2/{agent.project_id}/anomalies?state=open",
        headers(secret),
        predicate=lambda body: any(a["backup_id"] == second["id"] for a in body["anomalies"]),
        timeout=10.0,
    )
    [anomaly] = [a for a in listed["anomalies"] if a["backup_id"] == second["id"]]
    assert anomaly["configuration_id"] == config.id and anomaly["state"] == "open"
    assert anomaly["changed_ratio"] == 0.8 and anomaly["compressed_size_ratio"] > 0.99
    assert not any(a["backup_id"] == first["id"] for a in listed["anomalies"])

    events = api.get(
        f"/v2/{agent.project_id}/configurations/{config.id}/events", headers=headers(secret)
    )
    assert events.status_code == 200, events.text
    [event] = [e for e in events.json()["events"] if e["event"] == "backup_anomaly"]
    assert event["backup"]["id"] == second["id"] and event["anomaly"]["id"] == anomaly["id"]

    # The hold's statements on PostgreSQL: the first backup is held, retention's read runs.
    with pg_db.read() as session:
        assert AnomalyRepository(session).held_among([first["id"], second["id"]]) == {first["id"]}
    expired_agents(pg_db, utcnow())

    dismissed = api.patch(
        f"/v2/{agent.project_id}/anomalies/{anomaly['id']}",
        json=[{"op": "replace", "path": "/state", "value": "dismissed"}],
        headers={**headers(secret), "Content-Type": JSON_PATCH},
    )
    assert dismissed.status_code == 200 and dismissed.json()["state"] == "dismissed"
    with pg_db.read() as session:
        assert AnomalyRepository(session).held_among([first["id"]]) == set()
