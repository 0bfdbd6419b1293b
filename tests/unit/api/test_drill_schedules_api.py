"""A configuration's drill schedule over HTTP (issue 14, an API extension): PUT sets it (201
new, 200 replaced), GET reads it with the next due time and the last drill's result, DELETE
removes it; an admin sets, an observer reads; bad input is a 400 with a JSON body; another
project's configuration is 404; and the configuration's own v2 body stays byte for byte."""

from __future__ import annotations

import pytest

from cloudbackup.domain.drill_run import execute_drill
from factories import rows
from factories.api import OTHER_PROJECT, PROJECT, headers, token
from factories.runs import backed_up
from factories.trees import make_tree


@pytest.fixture
def config(db):
    return rows.configuration(db, rows.agent(db))


def _url(configuration_id, project_id=PROJECT):
    return f"/v2/{project_id}/configurations/{configuration_id}/drill-schedule"


def _put(client, secret, configuration_id, body, project_id=PROJECT):
    return client.put(_url(configuration_id, project_id), json=body, headers=headers(secret))


def test_an_admin_sets_reads_changes_and_removes_a_schedule(client, db, config):
    secret = token(db)
    created = _put(client, secret, config.id, {"every_hours": 168})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["configuration_id"] == config.id and body["every_hours"] == 168
    assert body["next_due_time"].endswith("Z")  # due at once: the first proof at the next tick
    assert body["last_fired_time"] is None and body["last_drill"] is None
    rels = {link["rel"]: link["href"] for link in body["links"]}
    assert rels["self"].endswith(_url(config.id)) and rels["configuration"].endswith(config.id)
    assert client.get(_url(config.id), headers=headers(secret)).json() == body

    changed = _put(client, secret, config.id, {"every_hours": 24})
    assert changed.status_code == 200 and changed.json()["every_hours"] == 24
    assert client.delete(_url(config.id), headers=headers(secret)).status_code == 204
    gone = client.get(_url(config.id), headers=headers(secret))
    assert gone.status_code == 404
    assert gone.json()["message"] == "The configuration has no drill schedule."
    assert client.delete(_url(config.id), headers=headers(secret)).status_code == 404


@pytest.mark.parametrize("role", ["creator", "observer"])
def test_only_an_admin_sets_or_removes_it_and_an_observer_reads_it(client, db, config, role):
    _put(client, token(db), config.id, {"every_hours": 12})
    other = token(db, role=role)
    refused = _put(client, other, config.id, {"every_hours": 1})
    assert refused.status_code == 403, refused.text
    assert "delete permission required" in refused.json()["message"]
    assert client.delete(_url(config.id), headers=headers(other)).status_code == 403
    seen = client.get(_url(config.id), headers=headers(other))
    assert seen.status_code == 200 and seen.json()["every_hours"] == 12


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"every_hours": 0},
        {"every_hours": 8761},
        {"every_hours": -1},
        {"every_hours": 1.5},
        {"every_hours": "168"},
        {"every_hours": True},
        {"every_hours": None},
        {"every_hours": 24, "cron": "0 3 * * 1"},
        [],
        "weekly",
    ],
)
def test_bad_input_is_a_400_with_a_json_body(client, db, config, body):
    response = _put(client, token(db), config.id, body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["message"] and answer["errors"], answer
    assert client.get(_url(config.id), headers=headers(token(db))).status_code == 404


def test_the_400_names_the_problem_without_echoing_the_value(client, db, config):
    secret = token(db)
    zero = _put(client, secret, config.id, {"every_hours": 0}).json()
    assert zero["errors"] == ["every_hours must be from 1 to 8760, not 0."]
    huge = _put(client, secret, config.id, {"every_hours": ["x" * 1000]}).json()
    assert huge["errors"] == ["every_hours must be an integer number of hours, not list."]
    missing = _put(client, secret, config.id, {}).json()
    assert missing["errors"] == ["every_hours is required: hours between drills (1 to 8760)."]


def test_malformed_json_or_another_content_type_is_a_400(client, db, config):
    secret = token(db)
    url = _url(config.id)
    broken = client.put(
        url, content=b"{", headers={**headers(secret), "Content-Type": "application/json"}
    )
    assert broken.status_code == 400 and broken.json()["message"] == "Malformed JSON."
    text = client.put(
        url, content=b"every_hours=1", headers={**headers(secret), "Content-Type": "text/plain"}
    )
    assert text.status_code == 400 and "Content-Type" in text.json()["message"]


def test_another_projects_unknown_or_deleted_configuration_is_404(client, db, config):
    mine = token(db)
    assert _put(client, mine, config.id, {"every_hours": 1}).status_code == 201
    other = token(db, OTHER_PROJECT)
    for method in ("PUT", "GET", "DELETE"):
        foreign = client.request(
            method,
            _url(config.id, OTHER_PROJECT),
            json={"every_hours": 1},
            headers=headers(other),
        )
        assert foreign.status_code == 404, (method, foreign.text)
        assert foreign.json()["message"] == "Configuration not found."
    assert _put(client, mine, "no-such-configuration", {"every_hours": 1}).status_code == 404
    assert client.delete(f"/v2/{PROJECT}/configurations/{config.id}", headers=headers(mine))
    assert client.get(_url(config.id), headers=headers(mine)).status_code == 404
    assert _put(client, mine, config.id, {"every_hours": 1}).status_code == 404


def test_the_configurations_v2_body_is_unchanged_byte_for_byte(client, db, config):
    secret = token(db)
    url = f"/v2/{PROJECT}/configurations/{config.id}"
    before = client.get(url, headers=headers(secret)).content
    listed = client.get(f"/v2/{PROJECT}/configurations", headers=headers(secret)).content
    assert _put(client, secret, config.id, {"every_hours": 168}).status_code == 201
    assert client.get(url, headers=headers(secret)).content == before
    assert client.get(f"/v2/{PROJECT}/configurations", headers=headers(secret)).content == listed
    assert b"drill" not in before


def test_the_schedule_shows_the_configurations_last_drill(client, db, settings, tmp_path):
    tree = make_tree(tmp_path / "src", files=4, size=10_000, with_excluded=False)
    _, config, done = backed_up(db, settings, tree.root)
    secret = token(db)
    _put(client, secret, config.id, {"every_hours": 24})
    started = client.post(f"/v2/{PROJECT}/backups/{done.id}/drills", headers=headers(secret))
    assert execute_drill(db, settings, started.json()["id"]) == "passed"
    drill = client.get(f"/v2/{PROJECT}/drills/{started.json()['id']}", headers=headers(secret))
    last = client.get(_url(config.id), headers=headers(secret)).json()["last_drill"]
    assert last["id"] == drill.json()["id"] and last["backup_id"] == done.id
    assert last["state"] == "passed" and last["ended_time"] == drill.json()["ended_time"]
    assert last["duration_seconds"] == drill.json()["duration_seconds"] > 0
    assert last["bytes_per_second"] == drill.json()["bytes_per_second"] > 0
    assert (last["files_checked"], last["mismatches"]) == (tree.files, 0)
