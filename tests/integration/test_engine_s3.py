"""The vault on an S3-compatible object store: a real `moto_server` process on a loopback port.

Nothing of ours is mocked: the engine talks HTTP to the server through boto3, exactly as it
would to AWS S3 or MinIO (conditional writes included).
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from cloudbackup.engine import (
    S3Storage,
    Vault,
    forget,
    open_vault,
    prune,
    restore_snapshot,
    run_backup,
    verify,
)
from cloudbackup.engine.vault import pack_name
from cloudbackup.settings import Settings
from factories.trees import digests

BUCKET = "cloudbackup-vaults"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    moto = Path(sys.executable).parent / "moto_server"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"moto_server did not start: {log.read_text()}") from None
                time.sleep(0.1)
        client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def client(endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def settings_for(endpoint: str, tmp_path: Path, **extra: str) -> Settings:
    return Settings(
        data_dir=str(tmp_path),
        vault_url=f"s3://{BUCKET}/tenants",
        s3_endpoint_url=endpoint,
        s3_region="us-east-1",
        s3_access_key_id="test",
        s3_secret_access_key="test",
        **extra,  # type: ignore[arg-type]
    )


def make_source(root: Path) -> Path:
    rng = random.Random(3)
    (root / "docs" / "empty").mkdir(parents=True)
    (root / "docs" / "a.txt").write_bytes(b"hello s3\n" * 1000)
    (root / "docs" / "big.bin").write_bytes(rng.randbytes(5 * 1024 * 1024 + 7))
    (root / "docs" / b"caf\xe9".decode("latin-1")).write_bytes(b"name")
    os.symlink("a.txt", root / "docs" / "link")
    return root / "docs"


def backup(vault: Vault, source: Path):  # type: ignore[no-untyped-def]
    return run_backup(
        vault,
        [{"type": "folder", "path": str(source)}],
        [],
        on_progress=lambda p: None,
        should_stop=lambda: False,
    )


def test_backup_restore_forget_prune_verify_on_s3(s3_endpoint: str, tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    settings = settings_for(s3_endpoint, tmp_path)
    vault = open_vault(settings, "vault-plain")
    assert isinstance(vault.storage, S3Storage)

    first = backup(vault, source)
    unchanged = backup(open_vault(settings, "vault-plain"), source)
    (source / "a.txt").write_bytes(b"changed on the second day\n")
    again = backup(open_vault(settings, "vault-plain"), source)

    assert (first.files_backed_up, unchanged.files_backed_up, unchanged.bytes_backed_up) == (
        3,
        0,
        0,
    )
    assert (again.files_backed_up, again.bytes_backed_up) == (1, 26)
    keys = [
        o["Key"]
        for o in client(s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix="tenants/vault-plain/")[
            "Contents"
        ]
    ]
    assert "tenants/vault-plain/config" in keys
    assert any(k.startswith("tenants/vault-plain/packs/") for k in keys)
    assert not any("/locks/" in k for k in keys)  # released

    destination = tmp_path / "restore"
    result = restore_snapshot(open_vault(settings, "vault-plain"), first.snapshot_id, destination)
    assert result.errors == []
    restored = destination / str(source).lstrip("/")
    assert (restored / "a.txt").read_bytes() == b"hello s3\n" * 1000  # as it was then
    others = {k: v for k, v in digests(source).items() if k != "a.txt"}
    assert {k: v for k, v in digests(restored).items() if k != "a.txt"} == others
    assert os.readlink(restored / "link") == "a.txt"
    assert (restored / "empty").is_dir()

    forget(vault, [first.snapshot_id, unchanged.snapshot_id])
    pruned = prune(vault)
    assert pruned.packs_removed >= 1  # the first file list (the old a.txt's data is repacked)
    assert pruned.bytes_after < pruned.bytes_before
    assert verify(vault).ok

    # A flipped byte in a pack on the server is found and named.
    big = next(
        e for e in vault.read_manifest(again.snapshot_id).entries if e.path.endswith(b"big.bin")
    )
    loc = vault.load_index().get(big.chunks[0])
    assert loc is not None
    key = f"tenants/vault-plain/{pack_name(loc.pack)}"
    s3 = client(s3_endpoint)
    data = bytearray(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    data[loc.offset + 10] ^= 1
    s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))
    report = verify(open_vault(settings, "vault-plain"))
    assert [f.path for d in report.damaged for f in d.files] == [os.fsdecode(bytes(big.path))]


def test_encrypted_vault_on_s3_with_a_key_file(s3_endpoint: str, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    key_file = keys / "vault-secret.key"
    key_file.write_text("s3 password\n")
    key_file.chmod(0o600)
    settings = settings_for(s3_endpoint, tmp_path, vault_key_dir=str(keys))
    source = make_source(tmp_path / "src")

    vault = open_vault(settings, "vault-secret")
    assert vault.encrypted
    snapshot = backup(vault, source).snapshot_id

    stored = client(s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix="tenants/vault-secret/")
    for obj in stored["Contents"]:
        body = client(s3_endpoint).get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
        assert b"hello s3" not in body
    destination = tmp_path / "restore"
    assert restore_snapshot(vault, snapshot, destination).errors == []
    assert digests(destination / str(source).lstrip("/")) == digests(source)


def test_snapshot_ids_stay_distinct_under_concurrent_allocation(
    s3_endpoint: str, tmp_path: Path
) -> None:
    settings = settings_for(s3_endpoint, tmp_path)
    open_vault(settings, "vault-ids")
    got: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def allocate() -> None:
        vault = open_vault(settings, "vault-ids")
        start.wait(timeout=10)
        for _ in range(5):
            snapshot_id = vault.allocate()
            with lock:
                got.append(snapshot_id)

    threads = [threading.Thread(target=allocate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(got) == list(range(1, 21))  # the store's conditional create arbitrates
