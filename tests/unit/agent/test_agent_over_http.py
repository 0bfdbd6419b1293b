"""The remote agent against the real API app in process: registration keeps its secrets in a
private folder, the engine's vault works over the HTTP storage (sealed objects only reach the
server), and a backup handed over the channel runs on the "host" and is reported through B4."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from cloudbackup.agent.http_storage import HttpStorage
from cloudbackup.agent.register import register
from cloudbackup.agent.runner import AgentRunner
from cloudbackup.agent.session import AgentSession, ApiRefused
from cloudbackup.agent.state import StateDir, StateError
from cloudbackup.domain.remote_runs import backup_executor, restore_executor
from cloudbackup.domain.run_protocol import Outcome
from cloudbackup.engine import Vault, restore_snapshot, run_backup
from cloudbackup.engine.locks import VaultLock
from cloudbackup.queue.agent_channels import RedisAgentChannel
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from factories.api import (
    PROJECT,
    create_configuration,
    headers,
    restore_body,
    start_backup,
    token,
)
from factories.remote_agents import next_work_item

SECRET_TEXT = b"the plaintext the server must never see " * 50


def _register(client: Any, db: Database, folder: Path) -> tuple[StateDir, AgentSession]:
    state = StateDir(folder)
    identity = register(
        "http://testserver.local", PROJECT, token(db), "host-a", state, client=client
    )
    return state, AgentSession(identity, client=client)


def _tree(root: Path) -> dict[str, bytes]:
    files = {
        "a.txt": SECRET_TEXT,
        "sub/b.bin": os.urandom(300_000),
        "sub/deeper/c.txt": b"c" * 10,
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def test_register_keeps_the_key_id_and_password_in_a_private_folder(
    client: Any, db: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "state"
    state, session = _register(client, db, folder)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for name in ("agent.json", "private_key.pem"):
        assert stat.S_IMODE(os.stat(folder / name).st_mode) == 0o600
    assert b"PRIVATE KEY" in (folder / "private_key.pem").read_bytes()
    agent = client.get(
        f"/v2/{PROJECT}/agents/{session.identity.agent_id}", headers=headers(token(db))
    ).json()
    assert len(agent["rsa_public_key"]["modulus"]) == 3072 // 4  # hex digits of the modulus
    assert agent["rsa_public_key"]["exponent"] == 10001  # 65537 in the spec's form (§8.1)
    assert session.token()  # A9 with what was kept
    with pytest.raises(StateError):
        register("http://testserver.local", PROJECT, token(db), "again", state, client=client)


def test_the_engine_backs_up_and_restores_through_the_http_storage(
    client: Any, db: Database, settings: Settings, tmp_path: Path
) -> None:
    state, session = _register(client, db, tmp_path / "state")
    source = tmp_path / "source"
    files = _tree(source)
    storage = HttpStorage(session)
    vault = Vault(storage, password=state.vault_password())
    result = run_backup(
        vault,
        [{"type": "folder", "path": str(source)}],
        [],
        on_progress=lambda _p: None,
        should_stop=lambda: False,
    )
    assert result.files_backed_up == len(files)
    target = tmp_path / "restored"
    restore_snapshot(Vault(storage, password=state.vault_password()), result.snapshot_id, target)
    for name, data in files.items():
        assert (target / str(source).lstrip("/") / name).read_bytes() == data
    # What the server stored: the agent's vault, sealed.
    agent_id = session.identity.agent_id
    vault_id = client.get(f"/v2/{PROJECT}/agents/{agent_id}", headers=headers(token(db))).json()[
        "vault"
    ]["id"]
    stored = list((settings.resolved_vault_path / vault_id).rglob("*"))
    assert any("packs" in str(p) for p in stored)
    for path in stored:
        if path.is_file():
            assert SECRET_TEXT[:40] not in path.read_bytes()
    assert stat.S_IMODE(os.stat(state.folder / "vault.key").st_mode) == 0o600
    assert not storage.create("snapshots/1.lock", b"x")  # taken by the backup: put-if-absent


def test_a_backup_handed_over_the_channel_runs_on_the_host_and_is_reported(
    client: Any, db: Database, settings: Settings, tmp_path: Path
) -> None:
    state, session = _register(client, db, tmp_path / "state")
    agent_id = session.identity.agent_id
    source = tmp_path / "source"
    files = _tree(source)
    runner = AgentRunner(state, session, wait=0)
    runner.start()  # EV3 startup, A7: the channel A7 names is the long poll
    assert runner.channel.endswith(f"/v2/{PROJECT}/agents/{agent_id}/channel")
    assert session.checked("GET", runner.channel, params={"wait": "0"}).json()["items"] == []

    admin = token(db)
    config = create_configuration(client, admin, agent_id, inclusions=[str(source)])
    backup_id = start_backup(client, admin, config["id"]).json()["id"]
    # What the Celery worker's backup task does with it:
    execute = backup_executor(RedisAgentChannel(settings.broker_url))
    assert execute(db, settings, backup_id) == Outcome.DELEGATED
    marker, item = next_work_item(session, runner.channel)

    assert runner.handle(item) == "completed"
    backup = client.get(f"/v2/{PROJECT}/backups/{backup_id}", headers=headers(admin)).json()
    assert backup["state"] == "completed"
    assert backup["files_backed_up"] == len(files)
    assert backup["bytes_backed_up"] == sum(len(d) for d in files.values())
    assert backup["snapshot_id"] == 1

    # A restore to the same agent, elsewhere: written on the host from its own vault.
    target = tmp_path / "restored"
    excluded = [{"type": "file", "path": f"{source}/sub/deeper/c.txt"}]
    body = restore_body(backup_id, agent_id, str(target), exclusions=excluded)
    started = client.post(f"/v2/{PROJECT}/restores", json=body, headers=headers(admin))
    assert started.status_code == 201, started.text
    restore_id = started.json()["id"]
    execute_restore = restore_executor(RedisAgentChannel(settings.broker_url))
    assert execute_restore(db, settings, restore_id) == Outcome.DELEGATED
    _, handed = next_work_item(session, runner.channel, marker)
    assert (handed["kind"], handed["attempt"]) == ("restore", 1)
    assert runner.handle(handed) == "completed"
    restore = client.get(f"/v2/{PROJECT}/restores/{restore_id}", headers=headers(admin)).json()
    assert restore["state"] == "completed", restore
    assert restore["files_restored"] == len(files) - 1
    for name, data in files.items():
        restored = target / str(source).lstrip("/") / name
        if name == "sub/deeper/c.txt":
            assert not restored.exists()  # excluded
        else:
            assert restored.read_bytes() == data


def test_the_http_storage_keeps_the_engines_storage_contract(
    client: Any, db: Database, tmp_path: Path
) -> None:
    _, session = _register(client, db, tmp_path / "state")
    storage = HttpStorage(session)
    name = "index/" + "0" * 32
    with pytest.raises(FileNotFoundError):
        storage.get(name)
    with pytest.raises(FileNotFoundError):
        storage.get_range(name, 0, 4)
    assert storage.create(name, b"0123456789")
    assert not storage.create(name, b"other")
    assert storage.get(name) == b"0123456789"
    assert storage.get_range(name, 8, 10) == b"89"  # fewer at the end
    assert storage.get_range(name, 20, 4) == b""
    storage.put(name, b"replaced")
    assert storage.get(name) == b"replaced"
    assert [(i.name, i.size) for i in storage.list("index/")] == [(name, 8)]
    assert list(storage.list("packs/")) == []
    with pytest.raises(ApiRefused) as refused:  # data is deleted only under a cleanup's lock
        storage.delete(name)
    assert refused.value.status == 409
    assert storage.get(name) == b"replaced"
    with VaultLock(storage, "cleanup", exclusive=True):
        storage.delete(name)
        storage.delete(name)  # removing an absent object is not an error
    assert list(storage.list("")) == []


def test_the_agent_reads_its_working_document_again_when_its_configurations_change(
    client: Any, db: Database, tmp_path: Path
) -> None:
    state, session = _register(client, db, tmp_path / "state")
    agent_id = session.identity.agent_id
    runner = AgentRunner(state, session, wait=0)
    runner.start()
    assert runner.document["configurations"] == []
    # Reading its channel makes the agent remote: from then on it is told of changes.
    assert session.checked("GET", runner.channel, params={"wait": "0"}).json()["items"] == []

    admin = token(db)
    config = create_configuration(client, admin, agent_id, inclusions=[str(tmp_path)])
    [entry] = session.checked("GET", runner.channel, params={"wait": "1"}).json()["items"]
    assert entry["item"] == {
        "type": "configuration_changed",
        "agent": {"id": agent_id},
        "configuration_id": config["id"],
        "change": "created",
    }
    assert runner.handle(entry["item"]) == "read"
    assert [c["id"] for c in runner.document["configurations"]] == [config["id"]]

    deleted = client.delete(f"/v2/{PROJECT}/configurations/{config['id']}", headers=headers(admin))
    assert deleted.status_code == 204, deleted.text
    params = {"wait": "1", "marker": entry["marker"]}
    [entry] = session.checked("GET", runner.channel, params=params).json()["items"]
    assert entry["item"]["change"] == "deleted"
    assert runner.handle(entry["item"]) == "read"
    assert runner.document["configurations"] == []


def test_the_agent_reads_its_working_document_again_when_it_is_due(
    client: Any, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback for a lost item: A7 again every ``document_seconds``, between two polls."""
    import threading

    state, session = _register(client, db, tmp_path / "state")
    runner = AgentRunner(state, session, wait=0, document_seconds=3600)
    runner.start()
    assert not runner.document_due()
    runner.document_read_at -= 3600  # an hour later
    assert runner.document_due()
    stop = threading.Event()
    reasons: list[str] = []

    def reread(why: str) -> str:
        reasons.append(why)
        stop.set()  # one turn of the serving loop is enough
        return "read"

    monkeypatch.setattr(runner, "start", lambda: None)
    monkeypatch.setattr(runner, "reread_document", reread)
    runner.serve(stop)
    assert reasons == ["every 3600 s"]
