"""A restore onto another remote agent, in process against the real API app and engine: agent A
backs up into its password-protected vault; R1 hands agent B that password sealed with B's
key; B reads A's vault through the API (read-only, only while the restore is open) and writes
the files byte-identical. A password B cannot read, or one that does not open A's vault, fails
the restore with a reason before anything is written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cloudbackup.agent.source_vault import UNREADABLE, WRONG_PASSWORD, SourceVaultStorage
from cloudbackup.client.vault_password import encrypt_password
from cloudbackup.domain import cross_agent_restores as cross
from cloudbackup.domain.remote_runs import backup_executor, restore_executor
from cloudbackup.domain.run_protocol import Outcome
from cloudbackup.queue.agent_channels import RedisAgentChannel
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.run_repositories import RestoreRepository
from cloudbackup.store.tables import AGENTS
from factories.api import PROJECT, create_configuration, headers, start_backup, token
from factories.remote_agents import Host

pytestmark = pytest.mark.slow  # two 3072-bit keys, scrypt on every open

PASSWORD = "the source vault's password"


def _backed_up(client: Any, db: Database, settings: Settings, host: Host, root: Path) -> str:
    """A completed backup of ``root`` by ``host``; its id."""
    root.mkdir(parents=True)
    (root / "a.txt").write_bytes(b"first file " * 1000)
    (root / "sub").mkdir()
    (root / "sub" / "b.bin").write_bytes(os.urandom(400_000))
    config = create_configuration(client, token(db), host.id, inclusions=[str(root)])
    backup_id = str(start_backup(client, token(db), config["id"]).json()["id"])
    channel = RedisAgentChannel(settings.broker_url)
    assert backup_executor(channel)(db, settings, backup_id) == Outcome.DELEGATED
    [item] = host.next_items()
    assert host.runner.handle(item) == "completed"
    return backup_id


def _restore(client: Any, db: Database, backup_id: str, onto: Host, sealed: str, to: Path) -> str:
    body = {
        "backup_id": backup_id,
        "destination_agent_id": onto.id,
        "destination_path": str(to),
        "overwrite_files": False,
        "encrypted_password_hex": sealed,
        "inclusions": [],
        "exclusions": [],
    }
    started = client.post(f"/v2/{PROJECT}/restores", json=body, headers=headers(token(db)))
    assert started.status_code == 201, started.text
    return str(started.json()["id"])


def _run(client: Any, db: Database, settings: Settings, onto: Host, restore_id: str) -> Any:
    """The worker hands the restore to ``onto``'s channel, ``onto`` runs it; R3 after."""
    channel = RedisAgentChannel(settings.broker_url)
    assert restore_executor(channel)(db, settings, restore_id) == Outcome.DELEGATED
    [item] = onto.next_items()
    onto.runner.handle(item)
    return client.get(f"/v2/{PROJECT}/restores/{restore_id}", headers=headers(token(db))).json()


def test_a_restore_onto_another_remote_agent_reads_the_source_vault_and_is_byte_identical(
    client: Any, db: Database, settings: Settings, tmp_path: Path
) -> None:
    a = Host(client, db, tmp_path / "a", "host-a")
    b = Host(client, db, tmp_path / "b", "host-b")
    root = tmp_path / "tree"
    backup_id = _backed_up(client, db, settings, a, root)
    refused = client.post(
        f"/v2/{PROJECT}/restores",
        json={
            "backup_id": backup_id,
            "destination_agent_id": b.id,
            "destination_path": str(tmp_path / "x"),
            "overwrite_files": False,
            "encrypted_password_hex": encrypt_password(b.key, a.state.vault_password()),
            "inclusions": [],
            "exclusions": [],
        },
        headers=headers(token(db)),
    )
    # A's key was made on A's host: not the user's to hand over until V2 gives it one.
    assert refused.status_code == 409 and refused.json()["message"] == cross.NO_USER_PASSWORD
    assert a.encrypt(PASSWORD) is True

    target = tmp_path / "onto-b"
    restore_id = _restore(client, db, backup_id, b, encrypt_password(b.key, PASSWORD), target)
    done = _run(client, db, settings, b, restore_id)
    assert (done["state"], done["files_restored"]) == ("completed", 2), done
    for path in root.rglob("*"):
        if path.is_file():
            assert (target / str(path).lstrip("/")).read_bytes() == path.read_bytes(), path
    with db.read() as session:
        row = RestoreRepository(session).get(restore_id)
        assert row is not None and row.encrypted_password_hex is None  # gone with the restore
    # The restore ended: B's token no longer reads A's vault.
    with pytest.raises(Exception, match="403"):
        SourceVaultStorage(b.session, a.id).get("config")


@pytest.mark.parametrize("wrong", ["not B's key", "not the password"])
def test_a_password_b_cannot_use_fails_the_restore_before_anything_is_written(
    client: Any, db: Database, settings: Settings, tmp_path: Path, wrong: str
) -> None:
    a = Host(client, db, tmp_path / "a", "host-a")
    b = Host(client, db, tmp_path / "b", "host-b")
    backup_id = _backed_up(client, db, settings, a, tmp_path / "tree")
    assert a.encrypt(PASSWORD) is True
    sealed = (
        encrypt_password(a.key, PASSWORD)  # sealed for A: B's key does not read it
        if wrong == "not B's key"
        else encrypt_password(b.key, "another password")
    )
    target = tmp_path / "onto-b"
    done = _run(client, db, settings, b, _restore(client, db, backup_id, b, sealed, target))
    assert done["state"] == "failed", done
    assert done["errors"]["reason"] == "restore_failed"
    expected = UNREADABLE if wrong == "not B's key" else WRONG_PASSWORD
    assert done["errors"]["diagnostics"] == expected
    assert not target.exists()


def test_a_restore_whose_source_turned_hosted_fails_at_the_claim_with_a_reason(
    client: Any, db: Database, settings: Settings, tmp_path: Path
) -> None:
    a = Host(client, db, tmp_path / "a", "host-a")
    b = Host(client, db, tmp_path / "b", "host-b")
    backup_id = _backed_up(client, db, settings, a, tmp_path / "tree")
    assert a.encrypt(PASSWORD) is True
    target = tmp_path / "onto-b"
    restore_id = _restore(client, db, backup_id, b, encrypt_password(b.key, PASSWORD), target)
    with db.transaction() as session:
        session.execute(
            sa.update(AGENTS).where(AGENTS.c.id == a.id).values(remote=False)
        )  # the operator moved A back to the workers
    channel = RedisAgentChannel(settings.broker_url)
    assert restore_executor(channel)(db, settings, restore_id) == Outcome.FAILED
    assert b.next_items() == []  # nothing handed over
    done = client.get(f"/v2/{PROJECT}/restores/{restore_id}", headers=headers(token(db))).json()
    assert done["state"] == "failed"
    assert done["errors"]["diagnostics"] == f"Nothing restored: {cross.HOSTED_SOURCE}"
