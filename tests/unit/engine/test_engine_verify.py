"""verify and `cloudbackup verify`: read packs back, name the files any damage touches."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from engine_trees import MIB, PASSWORD, BackupFn, Tree

from cloudbackup.engine import (
    SnapshotFile,
    Vault,
    VerifyProgress,
    VerifyStopped,
    verify,
)
from cloudbackup.engine.vault import pack_name


def flip_byte_in_chunk(vault: Vault, chunk_id: bytes) -> str:
    """Damage one byte in the middle of a chunk's stored bytes; returns its pack id."""
    loc = vault.load_index().get(chunk_id)
    assert loc is not None
    path = vault.root / pack_name(loc.pack)
    data = bytearray(path.read_bytes())
    data[loc.offset + loc.length // 2] ^= 0x40
    path.write_bytes(bytes(data))
    return loc.pack


def several_packs(vault: Vault, tree: Tree, backup: BackupFn, runs: int = 4) -> None:
    """Each run changes one file, so each backup writes two packs of its own (data, file list)."""
    for i in range(runs):
        tree.write(f"run-{i}.bin", os.urandom(MIB // 2))
        backup(tree.inclusions())


def test_a_healthy_vault_verifies_clean(vault: Vault, tree: Tree, backup: BackupFn) -> None:
    several_packs(vault, tree, backup)
    progress: list[VerifyProgress] = []

    report = verify(vault, on_progress=progress.append)

    assert report.ok and report.damaged == []
    assert report.packs_checked == report.packs_total == 8
    assert report.snapshots_checked == 4
    assert report.chunks_checked >= 8
    assert report.bytes_checked == sum(p.stat().st_size for p in (vault.root / "packs").glob("*/*"))
    assert [p.packs_done for p in progress] == list(range(9))


def test_a_flipped_byte_names_every_file_that_uses_the_chunk(
    encrypted_vault: Vault, tree: Tree, tmp_path: Path
) -> None:
    from cloudbackup.engine import run_backup

    for _ in range(2):
        run_backup(
            encrypted_vault,
            tree.inclusions(),
            [],
            on_progress=lambda p: None,
            should_stop=lambda: False,
        )
    big = next(
        e for e in encrypted_vault.read_manifest(1).entries if e.path == tree.path("big.bin")
    )
    pack = flip_byte_in_chunk(encrypted_vault, big.chunks[1])

    report = verify(encrypted_vault)

    assert not report.ok
    (damage,) = report.damaged
    assert (damage.chunk_id, damage.pack) == (big.chunks[1].hex(), pack)
    assert damage.reason.startswith("corrupt")
    big_path = os.fsdecode(tree.path("big.bin"))
    # Both snapshots hold big.bin (the second reused its chunks).
    assert damage.files == [SnapshotFile(1, big_path), SnapshotFile(2, big_path)]


def test_a_chunk_shared_by_two_files_names_both(vault: Vault, tree: Tree, backup: BackupFn) -> None:
    backup(tree.inclusions())
    top = next(e for e in vault.read_manifest(1).entries if e.path == tree.path("top.txt"))
    flip_byte_in_chunk(vault, top.chunks[0])

    (damage,) = verify(vault).damaged

    assert sorted(f.path for f in damage.files) == sorted(
        [os.fsdecode(tree.path("top.txt")), os.fsdecode(tree.path("nested/a/copy-of-top.txt"))]
    )


def test_a_missing_pack_is_reported_with_its_files(
    vault: Vault, tree: Tree, backup: BackupFn
) -> None:
    backup(tree.inclusions())
    entry = next(e for e in vault.read_manifest(1).entries if e.path == tree.path("big.bin"))
    loc = vault.load_index().get(entry.chunks[0])
    assert loc is not None
    (vault.root / pack_name(loc.pack)).unlink()

    report = verify(vault)

    assert not report.ok
    reasons = {d.reason for d in report.damaged}
    assert reasons == {"missing: its pack is gone"}
    # The file list lives in packs of its own, so it still names what was lost.
    named = {(f.snapshot_id, f.path) for d in report.damaged for f in d.files}
    assert (1, os.fsdecode(tree.path("big.bin"))) in named
    assert (1, os.fsdecode(tree.path("nested/a/b/deep.txt"))) in named


def test_a_sample_reads_only_part_of_the_packs(vault: Vault, tree: Tree, backup: BackupFn) -> None:
    several_packs(vault, tree, backup, runs=5)

    report = verify(vault, sample_fraction=0.5, seed=1)

    assert report.ok
    assert report.packs_total == 10
    assert report.packs_checked == math.ceil(10 * 0.5)
    assert verify(vault, sample_fraction=0.01).packs_checked == 1  # at least one
    with pytest.raises(ValueError, match="sample_fraction"):
        verify(vault, sample_fraction=0)


def test_verify_can_be_stopped(vault: Vault, tree: Tree, backup: BackupFn) -> None:
    several_packs(vault, tree, backup, runs=3)
    with pytest.raises(VerifyStopped):
        verify(vault, should_stop=lambda: True)


def run_cli(vault_parent: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``cloudbackup verify`` on the vaults under ``vault_parent``; each vault's key file holds
    the test password (the vaults are encrypted, as every new vault is)."""
    keys = vault_parent.parent / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    for vault in vault_parent.iterdir():
        (keys / f"{vault.name}.key").write_text(PASSWORD + "\n")
        (keys / f"{vault.name}.key").chmod(0o600)
    env = {
        **os.environ,
        "CLOUDBACKUP_VAULT_PATH": str(vault_parent),
        "CLOUDBACKUP_VAULT_URL": "",
        "CLOUDBACKUP_VAULT_KEY_DIR": str(keys),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "cloudbackup.cli", "verify", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_verify_exits_1_and_names_the_damaged_files(
    vault: Vault, tree: Tree, backup: BackupFn
) -> None:
    backup(tree.inclusions())
    vault_id = vault.root.name

    clean = run_cli(vault.root.parent, vault_id)
    assert clean.returncode == 0, clean.stderr
    assert "no damage found" in clean.stdout

    big = next(e for e in vault.read_manifest(1).entries if e.path == tree.path("big.bin"))
    flip_byte_in_chunk(vault, big.chunks[0])
    damaged = run_cli(vault.root.parent, vault_id, "--sample", "1")

    assert damaged.returncode == 1
    assert f"snapshot 1: {os.fsdecode(tree.path('big.bin'))}" in damaged.stdout
    assert big.chunks[0].hex() in damaged.stdout
    assert "verifying packs" in damaged.stderr  # the progress display


def test_cli_verify_refuses_bad_input_clearly(vault: Vault, tmp_path: Path) -> None:
    missing = run_cli(tmp_path, "no-such-vault")
    assert missing.returncode == 2
    assert "no vault at" in missing.stderr
    assert not (tmp_path / "no-such-vault").exists()  # verify never creates one
    bad_sample = run_cli(vault.root.parent, vault.root.name, "--sample", "1.5")
    assert bad_sample.returncode == 2
    assert "--sample must be above 0 and at most 1" in bad_sample.stderr
