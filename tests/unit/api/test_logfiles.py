"""A12-A16: log upload requests, the agent's reports and deletion (spec §8.2, §14.5)."""

from __future__ import annotations

import pytest

from factories import rows
from factories.api import OTHER_PROJECT, PROJECT, agent_token_of, headers, token

BASE = f"/v2/{PROJECT}"
HOST = f"http://testserver.local{BASE}"
PATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture
def agent(db):
    return rows.agent(db)


def request_log(client, secret, agent_id):
    response = client.post(f"{BASE}/agents/{agent_id}/logfiles", headers=headers(secret))
    assert response.status_code == 202, response.text
    return response


def report(client, secret, agent_id, logfile_id, value, agent_header=None, op="replace"):
    """A15 as the uploading agent (or as ``agent_header``'s agent): with that agent's token."""
    reporter = agent_header or agent_id
    return client.patch(
        f"{BASE}/agents/{agent_id}/logfiles/{logfile_id}",
        json=[{"op": op, "path": "/state", "value": value}],
        headers=headers(agent_token_of(client, reporter), **PATCH, **{"X-Agent-Id": reporter}),
    )


def agent_events(client, secret, agent_id):
    response = client.get(f"{BASE}/agents/{agent_id}/events", headers=headers(secret))
    return response.json()["events"]


def test_a_log_request_is_202_with_the_logfile_and_tells_the_agent_where_to_upload(
    client, db, agent
):
    secret = token(db)
    response = request_log(client, secret, agent.id)

    body = response.json()
    logfile_id = body["id"]
    self_href = f"{HOST}/agents/{agent.id}/logfiles/{logfile_id}"
    assert response.headers["location"] == self_href
    assert response.headers["content-type"] == "application/json"
    assert list(body) == ["id", "date", "state", "links"]
    assert body["state"] == "requested"
    assert body["date"].endswith("Z") and "." in body["date"]
    assert body["links"] == [{"href": self_href, "rel": "self"}]
    (event,) = agent_events(client, secret, agent.id)
    stamp = body["date"].replace(":", "-")
    assert event["event"] == "logfile_upload"
    assert event["agent"] == {"id": agent.id}
    assert event["request_id"] == logfile_id
    assert event["links"] == [
        {
            "href": f"{HOST}/agents/{agent.id}/vault/CloudBackupLogs/v2/{agent.id}/{stamp}.gz",
            "rel": "logfile",
        }
    ]


def test_the_agent_reports_started_then_completed_and_completed_is_final(client, db, agent):
    secret = token(db)
    logfile_id = request_log(client, secret, agent.id).json()["id"]

    assert report(client, secret, agent.id, logfile_id, "started").status_code == 204
    assert report(client, secret, agent.id, logfile_id, "started").status_code == 204  # a retry
    assert report(client, secret, agent.id, logfile_id, "completed").status_code == 204
    again = report(client, secret, agent.id, logfile_id, "completed")
    assert again.status_code == 409
    assert (
        again.json()["message"] == "The log upload is already completed; its state cannot change."
    )

    detail = client.get(f"{BASE}/agents/{agent.id}/logfiles/{logfile_id}", headers=headers(secret))
    body = detail.json()
    assert body["state"] == "completed"
    assert [link["rel"] for link in body["links"]] == ["self", "logfile"]
    events = agent_events(client, secret, agent.id)
    assert [e["event"] for e in events] == [
        "logfile_upload",
        "logfile_started",
        "logfile_completed",
    ]
    assert events[2] == {
        "id": events[2]["id"],
        "time": events[2]["time"],
        "event": "logfile_completed",
        "agent": {"id": agent.id},
        "request_id": logfile_id,
    }


def test_requested_may_go_straight_to_completed(client, db, agent):
    secret = token(db)
    logfile_id = request_log(client, secret, agent.id).json()["id"]
    assert report(client, secret, agent.id, logfile_id, "completed").status_code == 204


@pytest.mark.parametrize(
    ("patch", "content_type"),
    [
        ([{"op": "replace", "path": "/state", "value": "requested"}], PATCH),
        ([{"op": "replace", "path": "/state", "value": "done"}], PATCH),
        ([{"op": "add", "path": "/state", "value": "started"}], PATCH),
        ([{"op": "replace", "path": "/date", "value": "x"}], PATCH),
        ([{"op": "replace", "path": "/state", "value": 1}], PATCH),
        ([{"op": "replace", "path": "/state"}], PATCH),
        ([], PATCH),
        ({"state": "started"}, PATCH),
        ([{"op": "replace", "path": "/state", "value": "started"}], {}),
    ],
)
def test_bad_reports_are_400_and_change_nothing(client, db, agent, patch, content_type):
    secret = token(db)
    logfile_id = request_log(client, secret, agent.id).json()["id"]
    response = client.patch(
        f"{BASE}/agents/{agent.id}/logfiles/{logfile_id}",
        json=patch,
        headers={**headers(secret, **{"X-Agent-Id": agent.id}), **content_type},
    )
    assert response.status_code == 400, response.text
    assert response.json()["message"]
    detail = client.get(f"{BASE}/agents/{agent.id}/logfiles/{logfile_id}", headers=headers(secret))
    assert detail.json()["state"] == "requested"
    assert len(agent_events(client, secret, agent.id)) == 1


def test_only_the_agent_itself_reports(client, db, agent):
    secret = token(db)
    logfile_id = request_log(client, secret, agent.id).json()["id"]
    without = client.patch(
        f"{BASE}/agents/{agent.id}/logfiles/{logfile_id}",
        json=[{"op": "replace", "path": "/state", "value": "started"}],
        headers=headers(secret, **PATCH),
    )
    assert without.status_code == 403
    other = report(client, secret, agent.id, logfile_id, "started", rows.agent(db).id)
    assert other.status_code == 403


def test_list_detail_and_delete(client, db, agent):
    secret = token(db)
    assert client.get(f"{BASE}/agents/{agent.id}/logfiles", headers=headers(secret)).json() == {
        "logfiles": []
    }
    first = request_log(client, secret, agent.id).json()
    second = request_log(client, secret, agent.id).json()
    listed = client.get(f"{BASE}/agents/{agent.id}/logfiles", headers=headers(secret)).json()
    assert listed == {"logfiles": [first, second]}  # no paging links (OQ-20)

    url = f"{BASE}/agents/{agent.id}/logfiles/{first['id']}"
    creator = token(db, role="creator")
    assert client.delete(url, headers=headers(creator)).status_code == 403  # no Delete right
    response = client.delete(url, headers=headers(secret))
    assert response.status_code == 204
    assert client.get(url, headers=headers(secret)).status_code == 404
    assert client.delete(url, headers=headers(secret)).status_code == 404
    remaining = client.get(f"{BASE}/agents/{agent.id}/logfiles", headers=headers(secret)).json()
    assert remaining == {"logfiles": [second]}


def test_unknown_foreign_or_misplaced_logfiles_are_404(client, db, agent):
    secret = token(db)
    logfile_id = request_log(client, secret, agent.id).json()["id"]
    neighbour = rows.agent(db)
    foreign = rows.agent(db, OTHER_PROJECT)
    cases = [
        (f"/agents/{agent.id}/logfiles/nope", "Logfile not found."),
        (f"/agents/{neighbour.id}/logfiles/{logfile_id}", "Logfile not found."),
        (f"/agents/{foreign.id}/logfiles/{logfile_id}", "Agent not found."),
        (f"/agents/{foreign.id}/logfiles", "Agent not found."),
    ]
    for path, message in cases:
        response = client.get(f"{BASE}{path}", headers=headers(secret))
        assert response.status_code == 404, path
        assert response.json() == {"message": message}
    post = client.post(f"{BASE}/agents/{foreign.id}/logfiles", headers=headers(secret))
    assert post.status_code == 404
    assert report(client, secret, neighbour.id, logfile_id, "started").status_code == 404
