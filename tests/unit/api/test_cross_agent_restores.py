"""Restores onto another remote agent (R1's ``destination_agent_id``): which pairs of agents R1
accepts and why it refuses the others, and the one door into another agent's vault, read-only
and only while a restore onto the reader from that vault is open."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from cloudbackup.domain import cross_agent_restores as cross
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.run_repositories import RestoreRepository
from cloudbackup.store.tables import RESTORES, Agent, Backup, Restore
from factories import rows
from factories.api import OTHER_PROJECT, PROJECT, agent_token, headers, token

SEALED = "ab" * 384  # what R1 carries: hex, readable only with the destination's key
ACTIVE = ("start_requested", "queued", "preparing", "in_progress", "stop_requested")
FINAL = ("completed", "completed_with_errors", "failed", "stopped")


def _objects(agent_id: str, project_id: str = PROJECT) -> str:
    return f"/v2/{project_id}/agents/{agent_id}/vault/objects"


def _source(db: Database, settings: Settings, **agent: Any) -> tuple[Agent, Backup]:
    """An agent with a restorable backup and a config object in its vault folder."""
    owner = rows.agent(db, **agent)
    config = rows.configuration(db, owner)
    backup = rows.backup(db, config.id, restorable=True, snapshot_id=7)
    folder = settings.resolved_vault_path / owner.vault_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config").write_bytes(b"sealed config")
    return owner, backup


def _start(client: Any, db: Database, backup: Backup, destination: Agent, secret: Any) -> Any:
    body = {
        "backup_id": backup.id,
        "destination_agent_id": destination.id,
        "destination_path": "/restore/here",
        "overwrite_files": False,
        "encrypted_password_hex": secret,
        "inclusions": [],
        "exclusions": [],
    }
    return client.post(f"/v2/{PROJECT}/restores", json=body, headers=headers(token(db)))


def _row(db: Database, restore_id: str) -> Restore:
    with db.read() as session:
        row = RestoreRepository(session).get(restore_id)
        assert row is not None
        return row


def _set(db: Database, restore_id: str, **values: Any) -> None:
    with db.transaction() as session:
        session.execute(sa.update(RESTORES).where(RESTORES.c.id == restore_id).values(**values))


@pytest.mark.parametrize(
    ("source", "destination", "secret", "status", "message"),
    [
        ({"remote": False}, {"remote": True}, SEALED, 409, cross.HOSTED_SOURCE),
        ({"remote": True, "vault_encrypted": True}, {}, SEALED, 409, cross.HOSTED_DESTINATION),
        ({"remote": True}, {"remote": True}, SEALED, 409, cross.NO_USER_PASSWORD),
        ({"remote": True, "vault_encrypted": True}, {"remote": True}, None, 400, None),
    ],
    ids=["hosted-to-remote", "remote-to-hosted", "no-password-of-the-user", "password-missing"],
)
def test_r1_refuses_what_no_agent_could_open_and_says_why(
    client: Any,
    db: Database,
    settings: Settings,
    source: dict[str, Any],
    destination: dict[str, Any],
    secret: str | None,
    status: int,
    message: str | None,
) -> None:
    _, backup = _source(db, settings, **source)
    answer = _start(client, db, backup, rows.agent(db, **destination), secret)
    assert answer.status_code == status, answer.text
    if status == 409:
        assert answer.json()["message"] == message
    else:
        assert answer.json()["errors"] == [cross.PASSWORD_NEEDED]
    assert (
        client.get(f"/v2/{PROJECT}/restores", headers=headers(token(db))).json()["restores"] == []
    )


def test_r1_onto_another_remote_agent_keeps_the_sealed_password_until_the_restore_ends(
    client: Any, db: Database, settings: Settings
) -> None:
    _, backup = _source(db, settings, remote=True, vault_encrypted=True)
    destination = rows.agent(db, remote=True)
    started = _start(client, db, backup, destination, SEALED)
    assert started.status_code == 201, started.text
    restore_id = started.json()["id"]
    assert _row(db, restore_id).encrypted_password_hex == SEALED
    shown = client.get(f"/v2/{PROJECT}/restores/{restore_id}", headers=headers(token(db)))
    events = client.get(f"/v2/{PROJECT}/restores/{restore_id}/events", headers=headers(token(db)))
    assert SEALED not in shown.text and SEALED not in events.text
    stop = client.patch(
        f"/v2/{PROJECT}/restores/{restore_id}",
        json=[{"op": "replace", "path": "/state", "value": "stop_requested"}],
        headers={**headers(token(db)), "Content-Type": "application/json-patch+json"},
    )
    assert stop.status_code == 204, stop.text
    assert _row(db, restore_id).state == "stopped"  # before pickup: straight to stopped
    assert _row(db, restore_id).encrypted_password_hex is None  # erased when it ended


def test_r1_between_two_hosted_agents_stores_no_password(
    client: Any, db: Database, settings: Settings
) -> None:
    _, backup = _source(db, settings)
    started = _start(client, db, backup, rows.agent(db), SEALED)
    assert started.status_code == 201, started.text  # the workers open hosted vaults, as before
    assert _row(db, started.json()["id"]).encrypted_password_hex is None


def test_another_agents_vault_is_read_only_and_only_during_an_open_restore_onto_the_reader(
    client: Any, db: Database, settings: Settings
) -> None:
    source, backup = _source(db, settings, remote=True, vault_encrypted=True)
    reader, bystander = rows.agent(db, remote=True), rows.agent(db, remote=True)
    mine = {"X-Auth-Token": agent_token(db, reader.id)}
    config = f"{_objects(source.id)}/config"

    def reads() -> list[int]:
        return [
            client.get(config, headers=mine).status_code,
            client.get(config, headers={**mine, "Range": "bytes=0-5"}).status_code,
            client.head(config, headers=mine).status_code,
            client.get(_objects(source.id), params={"prefix": ""}, headers=mine).status_code,
        ]

    def writes() -> list[int]:
        return [
            client.put(config, content=b"x", headers=mine).status_code,
            client.put(config, content=b"x", headers={**mine, "If-None-Match": "*"}).status_code,
            client.delete(config, headers=mine).status_code,
            client.put(
                f"{_objects(source.id)}/locks/restore", content=b"x", headers=mine
            ).status_code,
        ]

    assert reads() == [403] * 4  # no restore at all
    rows.restore(db, backup.id, bystander, state="in_progress")  # onto another agent
    assert reads() == [403] * 4
    for state in FINAL:  # ended restores onto it grant nothing
        rows.restore(db, backup.id, reader, state=state)
    assert reads() == [403] * 4
    other_config = rows.configuration(db, bystander)
    other = rows.backup(db, other_config.id, restorable=True, snapshot_id=3)
    opened = rows.restore(db, other.id, reader, state="in_progress")  # from another vault
    assert reads() == [403] * 4
    for state in ACTIVE:
        _set(db, opened.id, vault_id=source.vault_id, state=state)
        assert reads() == [200, 206, 200, 200], state
        assert client.get(config, headers=mine).content == b"sealed config"
        assert writes() == [403] * 4, state  # never a write, even while it is open
        assert client.get(config, headers=headers(token(db))).status_code == 403  # users never
    assert (settings.resolved_vault_path / source.vault_id / "config").read_bytes() == (
        b"sealed config"
    )
    _set(db, opened.id, state="completed")
    assert reads() == [403] * 4  # the grant ends with the restore


def test_another_projects_agents_are_not_found(
    client: Any, db: Database, settings: Settings
) -> None:
    foreign, foreign_backup = _source(db, settings, project_id=OTHER_PROJECT, remote=True)
    reader = rows.agent(db, remote=True)
    rows.restore(db, foreign_backup.id, reader, state="in_progress", project_id=PROJECT)
    mine = {"X-Auth-Token": agent_token(db, reader.id)}
    # The other project's agent under this project's path: unknown here, whatever rows say.
    assert client.get(f"{_objects(foreign.id)}/config", headers=mine).status_code == 404
    assert client.get(_objects(foreign.id), headers=mine).status_code == 404
    # Under the other project's path: the token is not of that project.
    for url in (
        f"{_objects(foreign.id, OTHER_PROJECT)}/config",
        _objects(foreign.id, OTHER_PROJECT),
    ):
        assert client.get(url, headers=mine).status_code == 404
    theirs = {"X-Auth-Token": token(db, OTHER_PROJECT)}
    assert client.get(f"{_objects(reader.id)}/config", headers=theirs).status_code == 404
