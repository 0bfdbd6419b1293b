"""The logfile's link (issue 13 item 3): a hosted worker uploads the agent's own log lines, a
remote agent PUTs its log with its own token, and the link downloads it for the project."""

from __future__ import annotations

import gzip
import json
import logging
from datetime import timedelta

import pytest

from cloudbackup import logs
from cloudbackup.domain.logfiles import (
    LogfileService,
    agent_log_folder,
    republish_requested,
    upload_hosted_log,
)
from cloudbackup.store.tables import utcnow
from factories import rows
from factories.api import OTHER_PROJECT, PROJECT, agent_token_of, headers, token
from factories.runs import Recorder

BASE = f"/v2/{PROJECT}"
GZIP = {"Content-Type": "application/gzip"}


@pytest.fixture
def agent(db):
    return rows.agent(db)


@pytest.fixture
def agent_lines(settings):
    """The worker's handler of agents' lines, writing under the test's data folder."""
    handler = logs.AgentLogHandler(agent_log_folder(settings))
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("cloudbackup.test.agent_lines")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger
    logger.removeHandler(handler)


def ask_for_log(client, secret, agent_id):
    response = client.post(f"{BASE}/agents/{agent_id}/logfiles", headers=headers(secret))
    assert response.status_code == 202, response.text
    return response.json()["id"]


def link_of(client, secret, agent_id, logfile_id):
    body = client.get(f"{BASE}/agents/{agent_id}/logfiles/{logfile_id}", headers=headers(secret))
    links = {link["rel"]: link["href"] for link in body.json()["links"]}
    return body.json()["state"], links.get("logfile")


def event_link(client, secret, agent_id):
    events = client.get(f"{BASE}/agents/{agent_id}/events", headers=headers(secret)).json()
    (upload,) = [e for e in events["events"] if e["event"] == "logfile_upload"]
    return upload["links"][0]["href"]


def test_a_hosted_upload_sends_only_the_agents_own_lines_and_the_link_downloads_them(
    client, db, settings, agent, agent_lines
):
    other = rows.agent(db)
    with logs.bound(agent_id=agent.id):
        agent_lines.info("backing up /home/alice for agent A")
    with logs.bound(agent_id=other.id):
        agent_lines.info("backing up /home/bob for agent B")
    agent_lines.info("a worker line about no agent")
    secret = token(db)
    logfile_id = ask_for_log(client, secret, agent.id)
    assert link_of(client, secret, agent.id, logfile_id) == ("requested", None)
    before = client.get(event_link(client, secret, agent.id), headers=headers(secret))
    assert before.status_code == 404
    assert "not been uploaded" in before.json()["message"]

    assert upload_hosted_log(db, settings, logfile_id) == "completed"
    assert upload_hosted_log(db, settings, logfile_id) == "noop"  # a duplicate delivery

    state, href = link_of(client, secret, agent.id, logfile_id)
    assert state == "completed"
    response = client.get(href, headers=headers(secret))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    text = gzip.decompress(response.content).decode()
    assert "/home/alice" in text
    assert "/home/bob" not in text
    assert "no agent" not in text
    outsider = client.get(
        href.replace(PROJECT, OTHER_PROJECT), headers=headers(token(db, OTHER_PROJECT))
    )
    assert outsider.status_code == 404


def test_a_remote_agent_uploads_its_log_with_its_own_token_only(client, db, agent):
    secret = token(db)
    logfile_id = ask_for_log(client, secret, agent.id)
    href = event_link(client, secret, agent.id)
    body = gzip.compress(b'{"message": "agent log"}\n')
    other = rows.agent(db)

    as_user = client.put(href, content=body, headers=headers(secret, **GZIP))
    as_other_agent = client.put(
        href, content=body, headers=headers(agent_token_of(client, other.id), **GZIP)
    )
    assert (as_user.status_code, as_other_agent.status_code) == (403, 403)
    own = headers(agent_token_of(client, agent.id), **GZIP)
    assert client.put(href, content=body, headers=own).status_code == 204
    done = client.patch(
        f"{BASE}/agents/{agent.id}/logfiles/{logfile_id}",
        json=[{"op": "replace", "path": "/state", "value": "completed"}],
        headers={**own, "Content-Type": "application/json-patch+json"},
    )
    assert done.status_code == 204, done.text

    assert client.get(href, headers=headers(secret)).content == body
    late = client.put(href, content=body, headers=own)
    assert late.status_code == 409
    unknown = href.rsplit("/", 1)[0] + "/2001-01-01T00-00-00.000000Z.gz"
    assert client.get(unknown, headers=headers(secret)).status_code == 404


def test_a_log_request_is_published_for_the_agents_worker_and_republished_when_lost(db, agent):
    recorder = Recorder()
    row = LogfileService(db, recorder).request(PROJECT, agent.id, lambda a, n: f"/{a}/{n}")
    assert recorder.published == [("logfile", row.id, agent.id)]

    lost = Recorder()
    assert republish_requested(db, lost, timedelta(seconds=60)) == 0  # not stale yet
    later = utcnow() + timedelta(seconds=61)
    assert republish_requested(db, lost, timedelta(seconds=60), later) == 1
    assert lost.published == [("logfile", row.id, agent.id)]


def test_the_agent_log_handler_writes_json_lines_per_agent_and_keeps_one_older_file(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(logs, "AGENT_LOG_MAX_BYTES", 200)
    handler = logs.AgentLogHandler(tmp_path)
    handler.setFormatter(logging.Formatter('{"message": "%(message)s"}'))
    logger = logging.getLogger("cloudbackup.test.rotation")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with logs.bound(agent_id="agent-1"):
            for n in range(20):
                logger.info("line %d", n)
        with logs.bound(agent_id="../../etc/passwd"):
            logger.info("an id that is not an id writes nothing")
    finally:
        logger.removeHandler(handler)
    current = tmp_path / "agent-1.jsonl"
    older = tmp_path / "agent-1.jsonl.1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent-1.jsonl", "agent-1.jsonl.1"]
    assert current.stat().st_mode & 0o777 == 0o600
    lines = older.read_text().splitlines() + current.read_text().splitlines()
    assert json.loads(lines[-1]) == {"message": "line 19"}
