"""The agent's side of V2-V7 against the real API app in process and the real engine: the
password sent encrypted with its public key (RSA-OAEP SHA-256) is read with its private key,
the vault key is rewrapped (no data object rewritten) and verification tells right from wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cloudbackup.agent.http_storage import HttpStorage
from cloudbackup.client.host import new_key
from cloudbackup.client.vault_password import (
    PasswordUnreadable,
    decrypt_password,
    encrypt_password,
)
from cloudbackup.engine import Vault, WrongPassword, restore_snapshot, run_backup
from cloudbackup.store.db import Database
from factories.remote_agents import Host

SECRET_TEXT = b"nobody but the agent may read this " * 40


def test_the_password_round_trips_through_the_agents_key_and_no_other() -> None:
    public, private_pem = new_key(2048)
    _, other_pem = new_key(2048)
    encrypted = encrypt_password(public, "pässword 1")
    assert all(c in "0123456789abcdef" for c in encrypted) and len(encrypted) == 2048 // 4
    assert encrypt_password(public, "pässword 1") != encrypted  # OAEP is randomised
    assert decrypt_password(private_pem, encrypted.upper()) == "pässword 1"
    with pytest.raises(PasswordUnreadable):
        decrypt_password(other_pem, encrypted)
    with pytest.raises(PasswordUnreadable):
        decrypt_password(private_pem, "abcd")


def _objects(storage: HttpStorage) -> dict[str, bytes]:
    return {info.name: storage.get(info.name) for info in storage.list("") if info.name != "config"}


@pytest.mark.slow  # two 3072-bit keys, scrypt on every open
def test_enable_change_and_verify_rewrap_the_vault_key_and_tell_right_from_wrong(
    client: Any, db: Database, tmp_path: Path
) -> None:
    host = Host(client, db, tmp_path / "state")
    storage = HttpStorage(host.session)
    made_here = host.state.vault_password()
    source = tmp_path / "source"
    source.mkdir()
    (source / "a.txt").write_bytes(SECRET_TEXT)
    snapshot = run_backup(
        Vault(storage, password=made_here),
        [{"type": "folder", "path": str(source)}],
        [],
        on_progress=lambda _p: None,
        should_stop=lambda: False,
    ).snapshot_id
    before = _objects(storage)

    assert host.agent()["vault"]["encrypted"] is False
    assert host.encrypt("first secret") is True
    assert host.agent()["vault"]["encrypted"] is True
    assert host.state.vault_password() == "first secret"
    assert _objects(storage) == before  # only the config changed: no data rewritten
    restore_snapshot(Vault(storage, password="first secret"), snapshot, tmp_path / "one")
    assert (tmp_path / "one" / str(source).lstrip("/") / "a.txt").read_bytes() == SECRET_TEXT
    with pytest.raises(WrongPassword):
        Vault(storage, password=made_here, create=False)

    assert host.verify("first secret") is True
    assert host.verify("not it") is False

    assert host.encrypt("second", old="wrong old one") is False
    assert host.state.vault_password() == "first secret"
    assert host.encrypt("second", old="first secret") is True
    assert host.state.vault_password() == "second"
    assert host.verify("second") is True and host.verify("first secret") is False
    restore_snapshot(host.runner.vault(), snapshot, tmp_path / "two")  # the agent's own vault
    assert (tmp_path / "two" / str(source).lstrip("/") / "a.txt").read_bytes() == SECRET_TEXT
    for data in _objects(storage).values():
        assert SECRET_TEXT[:40] not in data  # sealed: no plaintext in any stored object
