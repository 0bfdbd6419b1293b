"""A remote agent's backup is checkpointed as a hosted one is: killed at about half (no last
checkpoint on the way out, as with ``kill -9``) and re-driven, the next attempt stores little again, reports
the run's true totals, completes and restores byte-identical; a cleanup in between keeps what
the live checkpoint lists, and the completed run deletes its checkpoint over the API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cloudbackup.domain.remote_runs import backup_executor, cleanup_executor
from cloudbackup.domain.run_protocol import Outcome
from cloudbackup.engine import Vault, restore_snapshot
from cloudbackup.engine.backup import _Archiver
from cloudbackup.engine.checkpoints import CheckpointWriter
from cloudbackup.queue.agent_channels import RedisAgentChannel
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from factories.api import PROJECT, create_configuration, start_backup, token
from factories.remote_agents import Host, age_heartbeat, next_work_item

MIB = 1024 * 1024
FILES = 12
FILE_BYTES = 2 * MIB
TOTAL = FILES * FILE_BYTES


class Killed(BaseException):
    """The host dies: nothing reports, nothing is saved on the way out."""


def _tree(root: Path) -> dict[str, bytes]:
    files = {f"f{i:02d}.bin": os.urandom(FILE_BYTES) for i in range(FILES)}
    root.mkdir(parents=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    return files


def _pack_bytes(settings: Settings, vault_id: str) -> int:
    """Bytes of every pack the server holds for the vault: what has been stored so far."""
    packs = settings.resolved_vault_path / vault_id / "packs"
    return sum(p.stat().st_size for p in packs.rglob("*") if p.is_file())


def _kill_at_half(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host dies right after a checkpoint recorded half of the bytes (with checkpoints
    every few hundredths of a second, about where a ``kill -9`` at half leaves the run)."""
    write = CheckpointWriter.write

    def dies_at_half(self: CheckpointWriter, entries: Any, files: int, stored: int) -> None:
        write(self, entries, files, stored)
        if stored >= TOTAL / 2:
            raise Killed

    monkeypatch.setattr(CheckpointWriter, "write", dies_at_half)
    # kill -9 leaves only the periodic checkpoints: no last one on the way out.
    monkeypatch.setattr(_Archiver, "save_unfinished", lambda self: None)


def test_a_remote_backup_killed_at_half_resumes_and_stores_little_again(
    client: Any, db: Database, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = Host(client, db, tmp_path / "state")
    source = tmp_path / "source"
    files = _tree(source)
    admin = token(db)
    config = create_configuration(client, admin, host.id, inclusions=[str(source)])
    backup_id = start_backup(client, admin, config["id"]).json()["id"]
    channel = RedisAgentChannel(settings.broker_url)
    execute = backup_executor(channel)
    assert execute(db, settings, backup_id) == Outcome.DELEGATED
    marker, item = next_work_item(host.session, host.runner.channel)
    assert item["checkpoint_seconds"] == settings.backup_checkpoint_seconds
    item["checkpoint_seconds"] = 0.05  # checkpoints often, so "half" is well recorded

    host.runner.max_bps = 8 * MIB  # about 3 s of reading: many checkpoints on the way
    with monkeypatch.context() as patched:
        _kill_at_half(patched)
        with pytest.raises(Killed):
            host.runner.handle(item)
    b3 = f"/v2/{PROJECT}/backups/{backup_id}"
    killed = client.get(b3, headers=host.admin).json()
    assert killed["state"] == "in_progress"
    vault_id = host.agent()["vault"]["id"]
    storage = host.runner.vault().storage
    assert list(storage.list("checkpoints/"))  # stored over the API

    # A cleanup while the run is not final keeps what its checkpoint lists.
    cleanup = client.post(
        f"/v2/{PROJECT}/cleanups",
        json={"agent_id": host.id, "state": "start_requested"},
        headers=host.admin,
    )
    assert cleanup.status_code == 201, cleanup.text
    cleanup_id = cleanup.json()["id"]
    stored_before = _pack_bytes(settings, vault_id)
    assert cleanup_executor(channel)(db, settings, cleanup_id) == Outcome.DELEGATED
    marker, cleaning = next_work_item(host.session, host.runner.channel, marker)
    assert cleaning["delete_checkpoints"] == []
    assert host.runner.handle(cleaning) == "completed"
    assert _pack_bytes(settings, vault_id) == stored_before

    age_heartbeat(db, backup_id, settings)  # the host went silent; it comes back
    assert execute(db, settings, backup_id) == Outcome.DELEGATED
    _, again = next_work_item(host.session, host.runner.channel, marker)
    assert (again["id"], again["attempt"]) == (backup_id, 2)
    assert host.runner.handle(again) == "completed"

    stored_again = _pack_bytes(settings, vault_id) - stored_before
    assert stored_again <= 0.6 * TOTAL, (stored_again, TOTAL)
    done = client.get(b3, headers=host.admin).json()
    # The run's true totals, over both attempts, each byte once.
    assert (done["files_backed_up"], done["bytes_backed_up"]) == (FILES, TOTAL)
    assert done["files_searched"] == FILES
    assert list(storage.list("checkpoints/")) == []  # deleted over the API when it completed
    target = tmp_path / "restored"
    restore_snapshot(
        Vault(storage, password=host.state.vault_password()), done["snapshot_id"], target
    )
    for name, data in files.items():
        assert (target / str(source).lstrip("/") / name).read_bytes() == data
