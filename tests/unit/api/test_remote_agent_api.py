"""The extension paths a remote agent uses: its vault objects and its event channel, each only
with the agent's own token; and the attempt (``X-Run-Attempt``) that fences its B4 reports."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import msgspec

from cloudbackup.domain.backup_run import claim_backup
from cloudbackup.engine.locks import LockInfo
from cloudbackup.queue.agent_channels import RedisAgentChannel
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import BackupRepository
from cloudbackup.store.tables import Agent, Backup
from factories import rows
from factories.api import PROJECT, agent_token, token

PACK = "packs/ab/" + "ab" * 32


def _objects(agent_id: str) -> str:
    return f"/v2/{PROJECT}/agents/{agent_id}/vault/objects"


def _auth(secret: str, **extra: str) -> dict[str, str]:
    return {"X-Auth-Token": secret, **extra}


def test_an_agent_writes_reads_lists_and_deletes_its_own_vault_objects(
    client: Any, db: Database, settings: Settings
) -> None:
    agent = rows.agent(db)
    me = _auth(agent_token(db, agent.id))
    data = os.urandom(3 * 1024 * 1024)  # above the API's 2 MiB body limit: packs are bigger
    url = f"{_objects(agent.id)}/{PACK}"
    assert client.put(url, content=data, headers=me).status_code == 204
    stored = settings.resolved_vault_path / agent.vault_id / PACK
    assert stored.read_bytes() == data  # in the agent's vault, where a hosted worker writes
    assert client.get(url, headers=me).content == data
    ranged = client.get(url, headers={**me, "Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == data[10:20]
    head = client.head(url, headers=me)
    assert head.status_code == 200 and head.headers["X-Object-Size"] == str(len(data))
    listed = client.get(_objects(agent.id), params={"prefix": "packs/"}, headers=me).json()
    assert [(o["name"], o["size"]) for o in listed["objects"]] == [(PACK, len(data))]
    refused = client.delete(url, headers=me)  # data goes only under a cleanup's lock
    assert refused.status_code == 409 and "lock" in refused.json()["message"]
    assert stored.exists()
    now = time.time_ns()
    lock = LockInfo(kind="cleanup", id="0" * 16, created_ns=now, refreshed_ns=now)
    lock_url = f"{_objects(agent.id)}/locks/cleanup"
    body = msgspec.msgpack.encode(lock)
    assert client.put(lock_url, content=body, headers=me).status_code == 204
    assert client.delete(url, headers=me).status_code == 204
    assert client.get(url, headers=me).status_code == 404
    assert not stored.exists()
    assert client.delete(lock_url, headers=me).status_code == 204  # locks go at any time


def test_put_if_absent_creates_once_then_answers_412_without_writing(
    client: Any, db: Database, settings: Settings
) -> None:
    agent = rows.agent(db)
    me = _auth(agent_token(db, agent.id), **{"If-None-Match": "*"})
    url = f"{_objects(agent.id)}/snapshots/1.lock"
    assert client.put(url, content=b"first", headers=me).status_code == 201
    assert client.put(url, content=b"second", headers=me).status_code == 412
    stored = settings.resolved_vault_path / agent.vault_id / "snapshots" / "1.lock"
    assert stored.read_bytes() == b"first"


def test_names_outside_the_engines_shapes_are_refused(client: Any, db: Database) -> None:
    agent = rows.agent(db)
    me = _auth(agent_token(db, agent.id))
    for name in ("packs/../../etc", "tmp/obj-1", "packs/zz/" + "0" * 64, "config/x", "x"):
        answer = client.put(f"{_objects(agent.id)}/{name}", content=b"x", headers=me)
        assert answer.status_code in (400, 404), name
        assert answer.status_code != 500
    bad_prefix = client.get(_objects(agent.id), params={"prefix": "../"}, headers=me)
    assert bad_prefix.status_code == 400


def test_only_the_agents_own_token_reaches_its_vault_objects_and_channel(
    client: Any, db: Database
) -> None:
    mine, other = rows.agent(db), rows.agent(db)
    other_token = _auth(agent_token(db, other.id))
    admin = _auth(token(db))
    url = f"{_objects(mine.id)}/config"
    channel = f"/v2/{PROJECT}/agents/{mine.id}/channel"
    for headers in (other_token, admin):
        assert client.put(url, content=b"x", headers=headers).status_code == 403
        assert client.get(url, headers=headers).status_code == 403
        assert client.delete(url, headers=headers).status_code == 403
        assert client.get(_objects(mine.id), headers=headers).status_code == 403
        assert client.get(channel, params={"wait": "0"}, headers=headers).status_code == 403
    with db.read() as session:
        agent = session.get(Agent, mine.id)
        assert agent is not None and agent.remote is False  # nobody but it made it remote


def test_the_channel_hands_the_agent_what_workers_pushed_after_its_marker(
    client: Any, db: Database, settings: Settings
) -> None:
    agent = rows.agent(db)
    me = _auth(agent_token(db, agent.id))
    url = f"/v2/{PROJECT}/agents/{agent.id}/channel"
    empty = client.get(url, params={"wait": "0"}, headers=me)
    assert empty.status_code == 200, empty.text
    assert empty.json() == {"items": [], "marker": "0"}
    with db.read() as session:
        row = session.get(Agent, agent.id)
        assert row is not None and row.remote is True  # reading its channel made it remote
    pusher = RedisAgentChannel(settings.broker_url)
    assert pusher.push(agent.id, {"type": "run", "id": "one"})
    assert pusher.push(agent.id, {"type": "run", "id": "two"})
    first = client.get(url, params={"wait": "1"}, headers=me).json()
    assert [entry["item"]["id"] for entry in first["items"]] == ["one", "two"]
    assert pusher.push(agent.id, {"type": "run", "id": "three"})
    after = client.get(url, params={"wait": "1", "marker": first["marker"]}, headers=me).json()
    assert [entry["item"]["id"] for entry in after["items"]] == ["three"]
    for bad in ({"marker": "abc"}, {"wait": "61"}, {"wait": "-1"}):
        assert client.get(url, params=bad, headers=me).status_code == 400


def _claimed_backup(db: Database, settings: Settings) -> tuple[Agent, Backup, int]:
    agent = rows.agent(db)
    config = rows.configuration(db, agent)
    backup = rows.backup(db, config.id, state="start_requested")
    claim = claim_backup(db, settings, backup.id)
    assert claim is not None
    return agent, backup, claim.attempt


def test_a_report_of_a_stale_attempt_is_409_and_changes_nothing(
    client: Any, db: Database, settings: Settings
) -> None:
    agent, backup, attempt = _claimed_backup(db, settings)
    me = {**_auth(agent_token(db, agent.id)), "Content-Type": "application/json-patch+json"}
    url = f"/v2/{PROJECT}/backups/{backup.id}"
    report = [
        {"op": "replace", "path": "/state", "value": "preparing"},
        {"op": "replace", "path": "/files_searched", "value": 7},
    ]
    with db.read() as session:
        before = BackupRepository(session).get(backup.id)
        assert before is not None
        heartbeat = before.heartbeat_at
    stale = client.patch(
        url, content=json.dumps(report), headers={**me, "X-Run-Attempt": str(attempt + 1)}
    )
    assert stale.status_code == 409, stale.text
    with db.read() as session:
        row = BackupRepository(session).get(backup.id)
        assert row is not None
        assert (row.state, row.files_searched, row.heartbeat_at) == ("queued", 0, heartbeat)
    fresh = client.patch(
        url, content=json.dumps(report), headers={**me, "X-Run-Attempt": str(attempt)}
    )
    assert fresh.status_code == 204, fresh.text
    with db.read() as session:
        row = BackupRepository(session).get(backup.id)
        assert row is not None
        assert (row.state, row.files_searched) == ("preparing", 7)
        assert row.heartbeat_at is not None and heartbeat is not None
        assert row.heartbeat_at > heartbeat  # an agent's report is its heartbeat
    bad = client.patch(url, content=json.dumps(report[1:]), headers={**me, "X-Run-Attempt": "two"})
    assert bad.status_code == 400
