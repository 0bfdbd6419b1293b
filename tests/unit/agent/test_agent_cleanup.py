"""A cleanup of a remote agent's vault: the worker decides server-side which snapshots expire
and hands the list to the agent's channel; the agent forgets exactly those, prunes under the
vault's lock and reports through C4 with its attempt."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from cloudbackup.agent.http_storage import HttpStorage
from cloudbackup.agent.register import register
from cloudbackup.agent.runner import AgentRunner
from cloudbackup.agent.session import AgentSession
from cloudbackup.agent.state import StateDir
from cloudbackup.domain.remote_runs import backup_executor, cleanup_executor
from cloudbackup.domain.run_protocol import Outcome
from cloudbackup.engine import Vault
from cloudbackup.queue.agent_channels import RedisAgentChannel
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.tables import Backup, utcnow
from factories.api import PROJECT, create_configuration, headers, start_backup, token
from factories.remote_agents import next_work_item


def _remote_agent(client: Any, db: Database, folder: Path) -> AgentRunner:
    state = StateDir(folder)
    identity = register(
        "http://testserver.local", PROJECT, token(db), "host-a", state, client=client
    )
    runner = AgentRunner(state, AgentSession(identity, client=client), wait=0)
    runner.start()
    runner.session.checked("GET", runner.channel, params={"wait": "0"})  # now it is remote
    return runner


def _next_item(runner: AgentRunner, marker: str) -> tuple[str, dict[str, Any]]:
    return next_work_item(runner.session, runner.channel, marker)


def test_a_cleanup_of_a_remote_agent_forgets_on_the_host_what_the_server_expired(
    client: Any, db: Database, settings: Settings, tmp_path: Path
) -> None:
    runner = _remote_agent(client, db, tmp_path / "state")
    agent_id = runner.session.identity.agent_id
    source = tmp_path / "source"
    source.mkdir()
    admin = token(db)
    config = create_configuration(
        client, admin, agent_id, inclusions=[str(source)], retention={"days": 3}
    )
    channel = RedisAgentChannel(settings.broker_url)
    marker = "0"
    backup_ids = []
    for generation in range(2):  # two snapshots with nothing in common
        (source / "data.bin").write_bytes(bytes([generation]) * 200_000 + b"%d" % generation)
        backup_id = start_backup(client, admin, config["id"]).json()["id"]
        assert backup_executor(channel)(db, settings, backup_id) == Outcome.DELEGATED
        marker, item = _next_item(runner, marker)
        assert runner.handle(item) == "completed"
        backup_ids.append(backup_id)
    old, young = backup_ids
    with db.transaction() as session:
        session.execute(
            sa.update(Backup)
            .where(col(Backup.id) == old)
            .values(ended_time=utcnow() - timedelta(days=4))
        )

    started = client.post(
        f"/v2/{PROJECT}/cleanups",
        json={"agent_id": agent_id, "state": "start_requested"},
        headers=headers(admin),
    )
    assert started.status_code == 201, started.text
    cleanup_id = started.json()["id"]
    # What the Celery worker's cleanup task does: no password here, so it hands the run over.
    assert cleanup_executor(channel)(db, settings, cleanup_id) == Outcome.DELEGATED
    marker, item = _next_item(runner, marker)
    assert (item["kind"], item["id"], item["attempt"]) == ("cleanup", cleanup_id, 1)
    assert item["forget"] == [1]  # decided server-side: the expired one, not the young one
    read = client.get(f"/v2/{PROJECT}/backups/{old}", headers=headers(admin)).json()
    assert read["restorable"] is False  # no restore starts from it from now on

    assert runner.handle(item) == "completed"
    cleanup = client.get(f"/v2/{PROJECT}/cleanups/{cleanup_id}", headers=headers(admin)).json()
    assert cleanup["state"] == "completed", cleanup
    assert cleanup["snapshot_ids"] == [1]
    assert cleanup["bytes_before"] > cleanup["bytes_after"] > 0  # the old data was pruned
    vault = Vault(HttpStorage(runner.session), password=runner.state.vault_password())
    assert vault.list_snapshots() == [2]
    assert client.get(f"/v2/{PROJECT}/backups/{young}", headers=headers(admin)).json()["restorable"]
    # The cleanup lock is released: nothing of the cleanup is left in the vault's locks.
    assert [lock.kind for lock in vault.list_locks()] == []


def test_the_agent_forgets_only_the_listed_snapshots(
    client: Any, db: Database, settings: Settings, tmp_path: Path
) -> None:
    """A young backup is never in the list: a cleanup with nothing due keeps every snapshot."""
    runner = _remote_agent(client, db, tmp_path / "state")
    agent_id = runner.session.identity.agent_id
    source = tmp_path / "source"
    source.mkdir()
    (source / "a.txt").write_bytes(b"a" * 1000)
    admin = token(db)
    config = create_configuration(client, admin, agent_id, inclusions=[str(source)])
    channel = RedisAgentChannel(settings.broker_url)
    backup_id = start_backup(client, admin, config["id"]).json()["id"]
    assert backup_executor(channel)(db, settings, backup_id) == Outcome.DELEGATED
    marker, item = _next_item(runner, "0")
    assert runner.handle(item) == "completed"
    started = client.post(
        f"/v2/{PROJECT}/cleanups",
        json={"agent_id": agent_id, "state": "start_requested"},
        headers=headers(admin),
    )
    cleanup_id = started.json()["id"]
    assert cleanup_executor(channel)(db, settings, cleanup_id) == Outcome.DELEGATED
    _, item = _next_item(runner, marker)
    assert item["forget"] == []
    assert runner.handle(item) == "completed"
    cleanup = client.get(f"/v2/{PROJECT}/cleanups/{cleanup_id}", headers=headers(admin)).json()
    assert (cleanup["state"], cleanup["snapshot_ids"]) == ("completed", [])
    vault = Vault(HttpStorage(runner.session), password=runner.state.vault_password())
    assert vault.list_snapshots() == [1]
