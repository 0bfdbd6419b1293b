"""Format 3: every object sealed to its name, and the config authenticated (issue 10, item 6)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from engine_trees import FAST_KDF, PASSWORD, BackupFn, Tree, packs_in

from cloudbackup.engine import (
    ChunkError,
    KdfParams,
    Vault,
    VaultError,
    WrongPassword,
    open_vault,
    run_backup,
)
from cloudbackup.engine.keys import CONFIG, AuthenticatedConfig, VaultConfig
from cloudbackup.engine.vault import pack_name
from cloudbackup.settings import load_settings


def objects(root: Path) -> dict[str, bytes]:
    """Every object of a local vault, by name."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.relative_to(root).parts[0].startswith(".")
    }


def test_an_index_object_copied_onto_another_name_does_not_open(vault: Vault) -> None:
    vault.store_bytes(b"first batch " * 1000)
    vault.store_bytes(b"second batch " * 1000)
    first, second = sorted(info.name for info in vault.storage.list("index/"))
    (vault.root / second).write_bytes((vault.root / first).read_bytes())

    with pytest.raises(VaultError, match=f"object {second} is damaged or was not written under"):
        vault.load_index()


def test_a_snapshot_object_copied_onto_another_id_does_not_open(
    vault: Vault, tree: Tree, backup: BackupFn
) -> None:
    backup(tree.inclusions())
    backup(tree.inclusions())
    # Rolling snapshot 2 back to snapshot 1's object (same data, other name) is refused.
    snapshots = vault.root / "snapshots"
    (snapshots / "2.manifest").write_bytes((snapshots / "1.manifest").read_bytes())

    assert vault.read_info(1).snapshot_id == 1
    with pytest.raises(VaultError, match=r"object snapshots/2\.manifest is damaged"):
        vault.read_info(2)


def test_a_pack_copied_onto_another_name_does_not_open(vault: Vault) -> None:
    (kept,) = vault.store_bytes(b"kept " * 20_000)
    (moved,) = vault.store_bytes(b"moved " * 20_000)
    loc = vault.locate(moved)
    assert loc is not None
    (other,) = packs_in(vault.root) - {loc.pack}
    target = vault.root / pack_name(loc.pack)
    target.write_bytes((vault.root / pack_name(other)).read_bytes())

    with pytest.raises(ChunkError, match="corrupt"):
        vault.read_chunk(moved)
    with pytest.raises(VaultError, match=f"object {pack_name(loc.pack)} is not the pack"):
        vault.read_pack_header(loc.pack, target.read_bytes())
    assert vault.read_chunk(kept) == b"kept " * 20_000


def test_a_chunk_copied_into_another_chunks_place_does_not_open(vault: Vault) -> None:
    """Two chunks of equal size swapped inside their pack: each is bound to its own id."""
    a, b = vault.store_bytes(b"A" * 5000)[0], vault.store_bytes(b"B" * 5000)[0]
    la, lb = vault.locate(a), vault.locate(b)
    assert la is not None and lb is not None and la.length == lb.length
    pa = vault.root / pack_name(la.pack)
    data = bytearray(pa.read_bytes())
    data[la.offset : la.offset + la.length] = (vault.root / pack_name(lb.pack)).read_bytes()[
        lb.offset : lb.offset + lb.length
    ]
    pa.write_bytes(bytes(data))

    with pytest.raises(ChunkError, match="authentication failed"):
        Vault(vault.root, password=PASSWORD).read_chunk(a)


def _stored(root: Path) -> tuple[AuthenticatedConfig, VaultConfig]:
    stored = msgspec.msgpack.decode((root / CONFIG).read_bytes(), type=AuthenticatedConfig)
    return stored, msgspec.msgpack.decode(stored.config, type=VaultConfig)


def _replace_config(root: Path, stored: AuthenticatedConfig, config: VaultConfig) -> None:
    body = msgspec.msgpack.encode(config)
    (root / CONFIG).write_bytes(
        msgspec.msgpack.encode(msgspec.structs.replace(stored, config=body))
    )


def _with_kdf(config: VaultConfig, kdf: KdfParams) -> VaultConfig:
    assert config.encryption is not None
    return msgspec.structs.replace(
        config, encryption=msgspec.structs.replace(config.encryption, kdf_params=kdf)
    )


def test_a_config_with_lowered_scrypt_parameters_is_refused(vault: Vault) -> None:
    stored, config = _stored(vault.root)
    assert config.format == 3
    # Below the floor: refused before any key is derived.
    _replace_config(vault.root, stored, _with_kdf(config, KdfParams(n=2**10, r=8, p=1)))
    with pytest.raises(VaultError, match="below the floor"):
        Vault(vault.root, password=PASSWORD)
    # Within the limits but not the vault's: another key, so it opens nothing.
    _replace_config(vault.root, stored, _with_kdf(config, KdfParams(n=2**14, r=9, p=1)))
    with pytest.raises(WrongPassword, match="or its config was altered"):
        Vault(vault.root, password=PASSWORD)
    # Costlier than any vault may ask: refused before the work, so a forged config is cheap.
    _replace_config(vault.root, stored, _with_kdf(config, KdfParams(n=2**24, r=8, p=1)))
    with pytest.raises(VaultError, match="exceed the limit"):
        Vault(vault.root, password=PASSWORD)


def test_a_config_altered_anywhere_is_refused(vault: Vault) -> None:
    good = (vault.root / CONFIG).read_bytes()
    stored, config = _stored(vault.root)
    # A setting changed, the MAC kept: the MAC no longer matches.
    _replace_config(vault.root, stored, msgspec.structs.replace(config, compression_level=19))
    with pytest.raises(VaultError, match="failed authentication: it was altered"):
        Vault(vault.root, password=PASSWORD)
    # One flipped bit at a spread of positions (each costs one scrypt): never opens.
    for position in range(0, len(good), max(1, len(good) // 12)):
        flipped = bytearray(good)
        flipped[position] ^= 0x04
        (vault.root / CONFIG).write_bytes(bytes(flipped))
        with pytest.raises(VaultError):
            Vault(vault.root, password=PASSWORD)
    (vault.root / CONFIG).write_bytes(good)
    assert Vault(vault.root, password=PASSWORD).config == config


def test_a_format_2_config_carrying_a_format_3_key_does_not_open(vault: Vault) -> None:
    """A downgrade: format 3's wrapped key in an unauthenticated format-2 config."""
    _stored_config, config = _stored(vault.root)
    legacy = msgspec.structs.replace(config, format=2)
    (vault.root / CONFIG).write_bytes(msgspec.msgpack.encode(legacy))
    with pytest.raises(WrongPassword):
        Vault(vault.root, password=PASSWORD)


def test_a_rolled_back_config_does_not_open_with_the_current_password(
    vault: Vault, tmp_path: Path
) -> None:
    (chunk,) = vault.store_bytes(b"written before the password change " * 100)
    before = (vault.root / CONFIG).read_bytes()
    vault.change_password(PASSWORD, "the new password")
    after = (vault.root / CONFIG).read_bytes()
    # The changed config is authenticated under the new password; the data is untouched.
    assert Vault(vault.root, password="the new password").read_chunk(chunk).startswith(b"written")

    (vault.root / CONFIG).write_bytes(before)
    with pytest.raises(WrongPassword):
        Vault(vault.root, password="the new password")
    (vault.root / CONFIG).write_bytes(after)


def test_no_plaintext_of_a_known_file_appears_in_any_vault_object(
    tmp_path: Path, tree: Tree
) -> None:
    """Through the service's way of opening vaults, with no password set anywhere."""
    settings = load_settings(
        {
            "CLOUDBACKUP_DATA_DIR": str(tmp_path / "data"),
            "CLOUDBACKUP_VAULT_PATH": str(tmp_path / "vaults"),
        }
    )
    sentence = b"the quarterly numbers nobody may read outside the company\n"
    tree.write("secret/plan.txt", sentence * 300)
    tree.write("secret/short.txt", sentence)
    result = run_backup(
        open_vault(settings, "tenant"),
        tree.inclusions(),
        [],
        on_progress=lambda p: None,
        should_stop=lambda: False,
    )
    assert result.files_backed_up == 7

    root = tmp_path / "vaults" / "tenant"
    stored = objects(root)
    assert any(name.startswith("packs/") for name in stored)
    for name, data in stored.items():
        assert sentence[:24] not in data, name
        assert b"plan.txt" not in data, name  # file names live in the encrypted tree too
    (key,) = (tmp_path / "data" / "keys").iterdir()
    password = key.read_bytes().strip()
    assert not any(password in data for data in stored.values())
    # And it all comes back.
    reopened = open_vault(settings, "tenant", create=False)
    entry = next(
        e
        for e in reopened.read_manifest(result.snapshot_id).entries
        if e.path.endswith(b"plan.txt")
    )
    assert b"".join(reopened.read_chunk(c) for c in entry.chunks) == sentence * 300


def test_a_new_vault_needs_a_password_and_a_kdf_above_the_floor(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="always encrypted"):
        Vault(tmp_path / "a")
    with pytest.raises(VaultError, match="below the floor"):
        Vault(tmp_path / "b", password=PASSWORD, kdf=KdfParams(n=2**10, r=8, p=1))
    assert not (tmp_path / "a" / CONFIG).exists()
    assert not (tmp_path / "b" / CONFIG).exists()
    assert Vault(tmp_path / "c", password=PASSWORD, kdf=FAST_KDF).config.format == 3
