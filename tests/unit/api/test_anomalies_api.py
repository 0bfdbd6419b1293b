"""GET/PATCH /v2/{project_id}/anomalies (the ransomware guard, an API extension): the list and
one anomaly for readers, dismissal by admins only, 404 across projects, 400 on a bad patch."""

from __future__ import annotations

import pytest

from factories import rows
from factories.api import OTHER_PROJECT, PROJECT, agent_token, headers, token

JSON_PATCH = "application/json-patch+json"
DISMISS = [{"op": "replace", "path": "/state", "value": "dismissed"}]


@pytest.fixture
def anomalies(db):
    agent = rows.agent(db)
    config = rows.configuration(db, agent)
    backups = [rows.backup(db, config.id, snapshot_id=n) for n in (1, 2, 3)]
    found = [rows.anomaly(db, backup) for backup in backups]
    return agent, config, found


def _patch(client, secret, anomaly_id, body, project_id=PROJECT):
    return client.patch(
        f"/v2/{project_id}/anomalies/{anomaly_id}",
        json=body,
        headers={**headers(secret), "Content-Type": JSON_PATCH},
    )


def test_an_observer_lists_and_reads_anomalies(client, db, anomalies):
    _, config, found = anomalies
    observer = token(db, role="observer")
    listed = client.get(f"/v2/{PROJECT}/anomalies", headers=headers(observer))
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert [a["id"] for a in body["anomalies"]] == [a.id for a in reversed(found)]  # newest first
    assert body["links"] == []

    one = client.get(f"/v2/{PROJECT}/anomalies/{found[0].id}", headers=headers(observer))
    assert one.status_code == 200
    item = one.json()
    assert {k: item[k] for k in ("id", "backup_id", "configuration_id", "state")} == {
        "id": found[0].id,
        "backup_id": found[0].backup_id,
        "configuration_id": config.id,
        "state": "open",
    }
    assert item["changed_ratio"] == 0.8 and item["compressed_size_ratio"] == 1.0
    assert item["history_compressed_size_ratio"] == 0.3 and item["dismissed_time"] is None
    assert item["detected_time"].endswith("Z")
    rels = {link["rel"]: link["href"] for link in item["links"]}
    assert rels["self"].endswith(f"/v2/{PROJECT}/anomalies/{found[0].id}")
    assert rels["backup"].endswith(f"/v2/{PROJECT}/backups/{found[0].backup_id}")


def test_the_list_pages_and_filters_like_the_other_lists(client, db, anomalies):
    _, _, found = anomalies
    secret = token(db)
    first = client.get(f"/v2/{PROJECT}/anomalies?limit=2", headers=headers(secret)).json()
    assert [a["id"] for a in first["anomalies"]] == [found[2].id, found[1].id]
    [link] = first["links"]
    assert link["rel"] == "next" and f"marker={found[1].id}" in link["href"]
    rest = client.get(link["href"], headers=headers(secret)).json()
    assert [a["id"] for a in rest["anomalies"]] == [found[0].id]
    assert [link["rel"] for link in rest["links"]] == ["previous"]

    assert _patch(client, secret, found[1].id, DISMISS).status_code == 200
    opened = client.get(f"/v2/{PROJECT}/anomalies?state=open", headers=headers(secret)).json()
    assert [a["id"] for a in opened["anomalies"]] == [found[2].id, found[0].id]
    closed = client.get(f"/v2/{PROJECT}/anomalies?state=dismissed", headers=headers(secret))
    assert [a["id"] for a in closed.json()["anomalies"]] == [found[1].id]

    for query in ("state=closed", "marker=nope", "limit=0", "sort_dir=up"):
        bad = client.get(f"/v2/{PROJECT}/anomalies?{query}", headers=headers(secret))
        assert bad.status_code == 400, (query, bad.text)
        assert bad.json()["message"] == "Validation failed."


def test_an_admin_dismisses_and_nobody_else_may(client, db, anomalies):
    agent, _, found = anomalies
    target = found[0].id
    for refused in (token(db, role="observer"), token(db, role="creator")):
        answer = _patch(client, refused, target, DISMISS)
        assert answer.status_code == 403, answer.text
        assert "delete permission required" in answer.json()["message"]
    # The agent's own token: the machine the anomaly is about may not clear it.
    assert _patch(client, agent_token(db, agent.id), target, DISMISS).status_code == 403

    done = _patch(client, token(db), target, DISMISS)
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "dismissed" and done.json()["dismissed_time"].endswith("Z")
    again = _patch(client, token(db), target, DISMISS)
    assert again.status_code == 409
    reread = client.get(f"/v2/{PROJECT}/anomalies/{target}", headers=headers(token(db)))
    assert reread.json()["state"] == "dismissed"


@pytest.mark.parametrize(
    "body",
    [
        [{"op": "replace", "path": "/state", "value": "open"}],
        [{"op": "replace", "path": "/state", "value": 1}],
        [{"op": "replace", "path": "/changed_ratio", "value": 0}],
        [{"op": "add", "path": "/state", "value": "dismissed"}],
        [{"op": "replace", "path": "/state"}],
        [],
        {"op": "replace", "path": "/state", "value": "dismissed"},
    ],
)
def test_a_bad_patch_is_a_400_that_changes_nothing(client, db, anomalies, body):
    _, _, found = anomalies
    secret = token(db)
    answer = _patch(client, secret, found[0].id, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["message"]
    reread = client.get(f"/v2/{PROJECT}/anomalies/{found[0].id}", headers=headers(secret))
    assert reread.json()["state"] == "open"


def test_another_projects_token_gets_404(client, db, anomalies):
    _, _, found = anomalies
    other = token(db, OTHER_PROJECT)
    target = found[0].id
    for response in (
        client.get(f"/v2/{PROJECT}/anomalies", headers=headers(other)),
        client.get(f"/v2/{PROJECT}/anomalies/{target}", headers=headers(other)),
        _patch(client, other, target, DISMISS),
        # Its own project's paths with this project's id: as unknown as any id.
        client.get(f"/v2/{OTHER_PROJECT}/anomalies/{target}", headers=headers(other)),
        _patch(client, other, target, DISMISS, project_id=OTHER_PROJECT),
    ):
        assert response.status_code == 404, response.text
    listed = client.get(f"/v2/{OTHER_PROJECT}/anomalies", headers=headers(other)).json()
    assert listed["anomalies"] == []
    mine = client.get(f"/v2/{PROJECT}/anomalies/{target}", headers=headers(token(db)))
    assert mine.json()["state"] == "open"
