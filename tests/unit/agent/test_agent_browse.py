"""Browse requests of a remote agent (B5/A10): the worker hands them to the agent's channel, the
agent lists its host or its own vault's snapshot and PUTs the children with its own token; B6 and
A11 then answer them. What the server can judge itself (roots, another agent's vault) it refuses
without asking the agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cloudbackup.agent.register import register
from cloudbackup.agent.runner import AgentRunner
from cloudbackup.agent.session import AgentSession
from cloudbackup.agent.state import StateDir
from cloudbackup.domain.browse import answer_browse
from cloudbackup.domain.remote_runs import backup_executor
from cloudbackup.domain.run_protocol import Outcome
from cloudbackup.queue.agent_channels import RedisAgentChannel
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from factories.api import PROJECT, create_configuration, headers, start_backup, token
from factories.remote_agents import next_work_item


def _remote_agent(client: Any, db: Database, folder: Path, name: str = "host-a") -> AgentRunner:
    state = StateDir(folder)
    identity = register("http://testserver.local", PROJECT, token(db), name, state, client=client)
    runner = AgentRunner(state, AgentSession(identity, client=client), wait=0)
    runner.start()
    runner.session.checked("GET", runner.channel, params={"wait": "0"})  # now it is remote
    return runner


def _next_item(runner: AgentRunner, marker: str = "0") -> tuple[str, dict[str, Any]]:
    return next_work_item(runner.session, runner.channel, marker)


def _tree(source: Path) -> None:
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_bytes(b"a" * 10)
    (source / "sub" / "b.bin").write_bytes(b"b" * 20)


def test_a_host_browse_of_a_remote_agent_is_listed_on_its_host(
    client: Any, db: Database, settings: Settings, tmp_path: Path
) -> None:
    runner = _remote_agent(client, db, tmp_path / "state")
    agent_id = runner.session.identity.agent_id
    source = tmp_path / "source"
    _tree(source)
    admin = token(db)
    asked = client.post(
        f"/v2/{PROJECT}/agents/{agent_id}/browse-requests",
        json={"path": str(source), "path_encoded": None},
        headers=headers(admin),
    )
    assert asked.status_code == 202, asked.text
    location = asked.headers["location"]
    request_id = location.rsplit("/", 1)[1]
    channel = RedisAgentChannel(settings.broker_url)
    # What the worker's browse task does: a remote agent's request goes to its channel.
    assert answer_browse(db, settings, request_id, channel) == "delegated"
    assert client.get(location, headers=headers(admin)).status_code == 404  # not answered yet
    _, item = _next_item(runner)
    assert (item["type"], item["kind"], item["id"]) == ("browse", "host", request_id)

    assert runner.handle(item) == "answered"
    body = client.get(location, headers=headers(admin)).json()
    assert (body["event"], body["succeeded"]) == ("host_browsed", True)
    assert [(i["name"], i["bytes"], i["mime_type"]) for i in body["items"]] == [
        ("a.txt", 10, "text/plain"),
        ("sub", 0, "application/x-directory"),
    ]
    # Answered once: a second answer (a re-published request) changes nothing.
    again = runner.session.request(
        "PUT",
        runner.session.agent_path("browse-requests", request_id, "result"),
        json={"succeeded": False, "entries": []},
    )
    assert again.status_code == 409
    assert client.get(location, headers=headers(admin)).json()["succeeded"] is True


def test_a_backup_browse_of_a_remote_agent_reads_its_own_vault_on_its_host(
    client: Any, db: Database, settings: Settings, tmp_path: Path
) -> None:
    runner = _remote_agent(client, db, tmp_path / "state")
    agent_id = runner.session.identity.agent_id
    source = tmp_path / "source"
    _tree(source)
    admin = token(db)
    config = create_configuration(client, admin, agent_id, inclusions=[str(source)])
    channel = RedisAgentChannel(settings.broker_url)
    backup_id = start_backup(client, admin, config["id"]).json()["id"]
    assert backup_executor(channel)(db, settings, backup_id) == Outcome.DELEGATED
    marker, item = _next_item(runner)
    assert runner.handle(item) == "completed"
    asked = client.post(
        f"/v2/{PROJECT}/backups/{backup_id}/browse-requests",
        json={
            "agent_id": agent_id,
            "encrypted_password_hex": None,
            "path": f"{source}/sub",
            "path_encoded": None,
        },
        headers=headers(admin),
    )
    assert asked.status_code == 202, asked.text
    location = asked.headers["location"]
    assert answer_browse(db, settings, location.rsplit("/", 1)[1], channel) == "delegated"
    _, item = _next_item(runner, marker)
    assert (item["kind"], item["snapshot_id"]) == ("backup", 1)
    assert runner.handle(item) == "answered"
    body = client.get(location, headers=headers(admin)).json()
    assert (body["event"], body["succeeded"]) == ("backup_browsed", True)
    assert [(i["name"], i["bytes"]) for i in body["items"]] == [("b.bin", 20)]


def test_only_the_agents_own_token_answers_its_browse_requests(
    client: Any, db: Database, settings: Settings, tmp_path: Path
) -> None:
    runner = _remote_agent(client, db, tmp_path / "a")
    other = _remote_agent(client, db, tmp_path / "b", name="host-b")
    agent_id = runner.session.identity.agent_id
    admin = token(db)
    asked = client.post(
        f"/v2/{PROJECT}/agents/{agent_id}/browse-requests",
        json={"path": str(tmp_path), "path_encoded": None},
        headers=headers(admin),
    )
    request_id = asked.headers["location"].rsplit("/", 1)[1]
    url = f"/v2/{PROJECT}/agents/{agent_id}/browse-requests/{request_id}/result"
    forged = {
        "succeeded": True,
        "entries": [{"name_encoded": "ZXZpbA==", "kind": "file", "bytes": 1}],
    }
    assert client.put(url, json=forged, headers=headers(admin)).status_code == 403  # a user
    assert other.session.request("PUT", url, json=forged).status_code == 403  # another agent
    # Its own path, another agent's request: not found.
    own_url = other.session.agent_path("browse-requests", request_id, "result")
    assert other.session.request("PUT", own_url, json=forged).status_code == 404
    bad = {"succeeded": True, "entries": [{"name_encoded": "Li4=", "kind": "file", "bytes": 1}]}
    assert runner.session.request("PUT", url, json=bad).status_code == 400  # ".." is no name
    assert client.get(asked.headers["location"], headers=headers(admin)).status_code == 404


def test_a_backup_in_another_agents_vault_is_refused_without_asking_the_agent(
    client: Any, db: Database, settings: Settings, tmp_path: Path
) -> None:
    owner = _remote_agent(client, db, tmp_path / "a")
    other = _remote_agent(client, db, tmp_path / "b", name="host-b")
    source = tmp_path / "source"
    _tree(source)
    admin = token(db)
    config = create_configuration(
        client, admin, owner.session.identity.agent_id, inclusions=[str(source)]
    )
    channel = RedisAgentChannel(settings.broker_url)
    backup_id = start_backup(client, admin, config["id"]).json()["id"]
    assert backup_executor(channel)(db, settings, backup_id) == Outcome.DELEGATED
    _, item = _next_item(owner)
    assert owner.handle(item) == "completed"
    asked = client.post(
        f"/v2/{PROJECT}/backups/{backup_id}/browse-requests",
        json={
            "agent_id": other.session.identity.agent_id,
            "encrypted_password_hex": None,
            "path": str(source),
            "path_encoded": None,
        },
        headers=headers(admin),
    )
    location = asked.headers["location"]
    assert answer_browse(db, settings, location.rsplit("/", 1)[1], channel) == "failed"
    assert client.get(location, headers=headers(admin)).json()["succeeded"] is False
    answer = other.session.checked("GET", other.channel, params={"wait": "0"}).json()
    assert answer["items"] == []  # nothing was handed to it
