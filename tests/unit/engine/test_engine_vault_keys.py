"""Every vault encrypted, its key in the key folder; format-2 vaults still open (issue 10, 5-6)."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import threading
from pathlib import Path

import pytest
from engine_trees import PASSWORD, Tree

from cloudbackup.domain.vaults import open_service_vault
from cloudbackup.engine import (
    NotEncrypted,
    Vault,
    VaultKeyMissing,
    open_vault,
    read_vault_password,
    restore_snapshot,
    run_backup,
)
from cloudbackup.engine.crypto import KDF_FLOOR, KdfParams
from cloudbackup.engine.keys import CONFIG, read_config
from cloudbackup.engine.storage import LocalStorage
from cloudbackup.settings import Settings, load_settings
from cloudbackup.store.db import Database
from factories import rows

# Vaults written by the format-2 engine (main at 7bc25d2) from the tree `format2_tree` describes.
FORMAT2 = Path(__file__).parent / "format2_vaults"
FORMAT2_PASSWORD = "format two password"
FORMAT2_SOURCE = b"/tmp/cloudbackup-format2-fixture/src"


def format2_tree() -> dict[bytes, bytes]:
    """What the fixture's snapshot 1 holds: relative path -> content."""
    blob = b"".join(hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(2048))
    return {
        b"docs/readme.txt": b"a format-2 vault written by the engine of 2026-12-03\n" * 40,
        b"data/blob.bin": blob,
    }


def service_settings(tmp_path: Path, **extra: str) -> Settings:
    env = {
        "CLOUDBACKUP_DATA_DIR": str(tmp_path / "data"),
        "CLOUDBACKUP_VAULT_PATH": str(tmp_path / "vaults"),
    }
    return load_settings(env | {f"CLOUDBACKUP_{k.upper()}": v for k, v in extra.items()})


def back_up(vault: Vault, source: Path) -> int:
    result = run_backup(
        vault,
        [{"type": "folder", "path": str(source)}],
        [],
        on_progress=lambda p: None,
        should_stop=lambda: False,
    )
    return result.snapshot_id


def test_a_new_vault_without_a_password_is_encrypted_with_a_private_key_file(
    tmp_path: Path, tree: Tree
) -> None:
    settings = service_settings(tmp_path)  # no key folder set: <data_dir>/keys
    vault = open_vault(settings, "vault-1")

    assert vault.encrypted and vault.config.format == 3
    keys = tmp_path / "data" / "keys"
    key = keys / "vault-1.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert list(keys.iterdir()) == [key]  # no temporary file left behind
    password = read_vault_password(keys, "vault-1")
    assert password is not None and len(password) >= 40
    # The key file is what opens it: a backup, then another opening, read it back.
    snapshot = back_up(vault, tree.root)
    again = open_vault(settings, "vault-1", create=False)
    assert again.read_info(snapshot).files == len(tree.files)
    assert password.encode() not in (tmp_path / "vaults" / "vault-1" / CONFIG).read_bytes()


def test_workers_creating_the_same_vault_at_once_share_one_key(tmp_path: Path) -> None:
    settings = service_settings(tmp_path)
    start = threading.Barrier(4)
    vaults: list[Vault] = []

    def open_it() -> None:
        start.wait(timeout=10)
        vaults.append(open_vault(settings, "raced"))

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(vaults) == 4
    assert len({v.config.id for v in vaults}) == 1
    assert os.listdir(tmp_path / "data" / "keys") == ["raced.key"]


def test_a_vault_recorded_encrypted_without_its_key_file_fails_and_stays_unwritten(
    tmp_path: Path,
) -> None:
    settings = service_settings(tmp_path)
    with pytest.raises(VaultKeyMissing) as raised:
        open_vault(settings, "vault-2", recorded_encrypted=True)
    key = tmp_path / "data" / "keys" / "vault-2.key"
    assert str(raised.value) == (
        f"key file {key} missing: restore it from your backup of the key folder"
    )
    assert not (tmp_path / "vaults" / "vault-2" / CONFIG).exists()  # no plaintext vault either
    assert not key.exists()  # and no new key in place of the lost one


def test_an_encrypted_vault_whose_key_file_is_gone_fails_and_is_left_as_it_was(
    tmp_path: Path,
) -> None:
    settings = service_settings(tmp_path)
    open_vault(settings, "vault-3")
    config = tmp_path / "vaults" / "vault-3" / CONFIG
    before = config.read_bytes()
    (tmp_path / "data" / "keys" / "vault-3.key").unlink()

    for create in (True, False):
        with pytest.raises(VaultKeyMissing, match=r"vault-3\.key missing: restore it"):
            open_vault(settings, "vault-3", create=create)
    assert config.read_bytes() == before
    assert not (tmp_path / "data" / "keys" / "vault-3.key").exists()


def _format2_copy(tmp_path: Path, kind: str) -> Path:
    root = tmp_path / "vaults" / f"old-{kind}"
    shutil.copytree(FORMAT2 / kind, root)
    return root


@pytest.mark.parametrize("kind", ["encrypted", "plain"])
def test_format_2_vaults_still_restore_byte_identically_and_take_new_backups(
    tmp_path: Path, kind: str, tree: Tree
) -> None:
    root = _format2_copy(tmp_path, kind)
    password = FORMAT2_PASSWORD if kind == "encrypted" else None
    vault = Vault(root, password=password)
    assert vault.config.format == 2 and vault.encrypted == (kind == "encrypted")

    destination = tmp_path / "restored"
    assert restore_snapshot(vault, 1, destination).errors == []
    restored = destination / FORMAT2_SOURCE.decode().lstrip("/")
    for relative, content in format2_tree().items():
        assert (restored / relative.decode()).read_bytes() == content
    assert os.readlink(restored / "data" / "link") == "../docs/readme.txt"

    # It keeps working as the tenant's vault: a new backup goes in, in its own format.
    snapshot = back_up(vault, tree.root)
    reopened = Vault(root, password=password)
    assert reopened.config.format == 2
    again = tmp_path / "again"
    assert restore_snapshot(reopened, snapshot, again).errors == []
    assert (again / str(tree.root).lstrip("/") / "top.txt").read_bytes() == b"hello\n"
    assert restore_snapshot(reopened, 1, tmp_path / "first-again").errors == []


def test_the_service_opens_format_2_vaults_as_they_are(tmp_path: Path) -> None:
    settings = service_settings(tmp_path)
    keys = tmp_path / "data" / "keys"
    _format2_copy(tmp_path, "plain")
    _format2_copy(tmp_path, "encrypted")

    # A plaintext format-2 vault without a key file: an existing tenant's, opened as it is.
    assert not open_vault(settings, "old-plain").encrypted
    assert not keys.exists() or not list(keys.iterdir())  # no key is invented for it
    # Recorded encrypted, or with a key file, a plaintext config is refused.
    with pytest.raises(VaultKeyMissing):
        open_vault(settings, "old-plain", recorded_encrypted=True)
    keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    (keys / "old-plain.key").write_text("a key planted for it\n")
    (keys / "old-plain.key").chmod(0o600)
    with pytest.raises(NotEncrypted):
        open_vault(settings, "old-plain")
    # An encrypted format-2 vault opens with its key file, and only with it.
    with pytest.raises(VaultKeyMissing):
        open_vault(settings, "old-encrypted")
    (keys / "old-encrypted.key").write_text(FORMAT2_PASSWORD + "\n")
    (keys / "old-encrypted.key").chmod(0o600)
    vault = open_vault(settings, "old-encrypted")
    assert vault.encrypted and vault.config.format == 2


def test_a_format_2_vault_password_can_still_be_changed(tmp_path: Path) -> None:
    root = _format2_copy(tmp_path, "encrypted")
    Vault(root, password=FORMAT2_PASSWORD).change_password(FORMAT2_PASSWORD, PASSWORD)
    vault = Vault(root, password=PASSWORD)
    assert vault.config.format == 2
    assert restore_snapshot(vault, 1, tmp_path / "restored").errors == []


def test_a_key_file_given_by_the_operator_is_the_new_vaults_password(tmp_path: Path) -> None:
    keys = tmp_path / "operator-keys"
    keys.mkdir()
    (keys / "vault-4.key").write_text(PASSWORD + "\n")
    (keys / "vault-4.key").chmod(0o600)
    settings = service_settings(tmp_path, vault_key_dir=str(keys))
    open_vault(settings, "vault-4")
    (keys / "vault-5.key").unlink(missing_ok=True)
    assert Vault.check_password(tmp_path / "vaults" / "vault-4", PASSWORD)
    assert not (tmp_path / "data" / "keys").exists()
    # A password someone chose gets the full scrypt cost; a random key only the floor's.
    assert kdf_of(tmp_path / "vaults" / "vault-4") == KdfParams()
    open_vault(settings, "vault-5")
    assert kdf_of(tmp_path / "vaults" / "vault-5") == KDF_FLOOR


def kdf_of(root: Path) -> KdfParams:
    stored = read_config(LocalStorage(root))
    assert stored is not None and stored[0].encryption is not None
    return stored[0].encryption.kdf_params


def test_the_service_opens_a_vault_recorded_encrypted_only_with_its_key(
    db: Database, settings: Settings
) -> None:
    """``domain.vaults.open_service_vault`` passes the agent row's ``vault_encrypted``."""
    recorded = rows.agent(db, vault_encrypted=True)
    plain = rows.agent(db)
    with pytest.raises(VaultKeyMissing, match="restore it from your backup of the key folder"):
        open_service_vault(db, settings, recorded.vault_id)
    assert not (settings.resolved_vault_path / recorded.vault_id / CONFIG).exists()
    # An agent row that records nothing special gets a new encrypted vault and its key.
    assert open_service_vault(db, settings, plain.vault_id).encrypted
    assert (settings.resolved_vault_key_dir / f"{plain.vault_id}.key").is_file()
