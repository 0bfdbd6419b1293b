"""The vault: config and keys, chunks in packs, the index, snapshot ids, manifests."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import blake3
import msgspec
import pytest
from engine_trees import (
    FAST_KDF,
    MIB,
    PASSWORD,
    chunk_ids,
    content_ids,
    packs_in,
    tmp_leftovers,
)

from cloudbackup.engine import (
    ChunkError,
    Entry,
    Manifest,
    PasswordRequired,
    PathItem,
    SnapshotNotFound,
    Vault,
    VaultError,
    WrongPassword,
    read_vault_password,
)
from cloudbackup.engine.chunking import MAX_CHUNK, MIN_CHUNK
from cloudbackup.engine.index import BlobRef, Index, Location


def manifest(snapshot_id: int, entries: list[Entry] | None = None) -> Manifest:
    return Manifest(
        snapshot_id=snapshot_id,
        created_ns=1,
        inclusions=[PathItem(type="folder", path="/data/")],
        exclusions=[],
        entries=entries or [],
    )


def test_content_is_chunked_by_content_and_read_back(vault: Vault) -> None:
    data = random.Random(1).randbytes(9 * MIB + 5)
    ids = vault.store_bytes(data)

    assert len(ids) >= 3  # ~1 MiB average chunks, never above the maximum
    assert b"".join(vault.read_chunk(c) for c in ids) == data
    sizes = [len(vault.read_chunk(c)) for c in ids]
    assert all(MIN_CHUNK <= s <= MAX_CHUNK for s in sizes[:-1])
    # A chunk's id is the vault's keyed BLAKE3 of its bytes.
    assert ids[0] == vault.sealer.chunk_id(vault.read_chunk(ids[0]))
    assert len(packs_in(vault.root)) == 1  # many chunks to one pack object
    assert tmp_leftovers(vault.root) == []


def test_an_insertion_moves_only_nearby_chunk_boundaries(vault: Vault) -> None:
    data = random.Random(2).randbytes(12 * MIB)
    before = vault.store_bytes(data)
    after = vault.store_bytes(b"a few new bytes at the start" + data)

    assert before != after
    shared = set(before) & set(after)
    assert len(shared) >= len(before) - 2  # content-defined: the rest realigns


def test_known_chunks_are_stored_once(vault: Vault) -> None:
    data = random.Random(3).randbytes(2 * MIB)
    vault.store_bytes(data)
    packs = packs_in(vault.root)

    vault.store_bytes(data)

    assert packs_in(vault.root) == packs  # nothing new written
    assert len(chunk_ids(vault)) == len(content_ids(vault, data))


def test_compressible_chunks_are_stored_compressed_random_ones_not(vault: Vault) -> None:
    text = b"the same line of text, again and again\n" * 50_000
    noise = os.urandom(len(text))
    vault.store_bytes(text)
    size_after_text = _pack_bytes(vault)
    vault.store_bytes(noise)
    size_after_noise = _pack_bytes(vault)

    assert size_after_text < len(text) // 20
    # Incompressible data is stored as is (plus a pack header), not grown by compression.
    assert len(noise) <= size_after_noise - size_after_text < len(noise) + 4096
    index = vault.load_index()
    flags = {index.get(c).compressed for c in content_ids(vault, text)}  # type: ignore[union-attr]
    assert flags == {True}
    flags = {index.get(c).compressed for c in content_ids(vault, noise)}  # type: ignore[union-attr]
    assert flags == {False}


def test_the_index_knows_each_chunks_plaintext_length(vault: Vault) -> None:
    """Where a file's next chunk starts without running the chunker again (a drill's check),
    for compressed and stored chunks alike; the location fields keep their values."""
    text = b"the same line of text, again and again\n" * 100_000
    noise = random.Random(5).randbytes(6 * MIB)
    ids = vault.store_bytes(text) + vault.store_bytes(noise)
    index = vault.load_index()
    assert len(ids) > 2
    assert [index.plain_length(c) for c in ids] == [len(vault.read_chunk(c)) for c in ids]
    assert sum(index.plain_length(c) or 0 for c in ids) == len(text) + len(noise)
    assert index.plain_length(b"\0" * 32) is None


def test_index_fields_do_not_overlap_at_their_limits() -> None:
    top = 0xFFFFFFFF
    index = Index()
    for n in range(3):
        index.add(f"pack{n}", [BlobRef(bytes([n]) * 32, top - n, top - 1, top - 2 - n, n == 1)])
    for n in range(3):
        chunk_id = bytes([n]) * 32
        assert index.get(chunk_id) == Location(f"pack{n}", top - n, top - 1, n == 1)
        assert index.plain_length(chunk_id) == top - 2 - n


def _pack_bytes(vault: Vault) -> int:
    return sum(p.stat().st_size for p in (vault.root / "packs").glob("*/*"))


def test_encrypted_vault_hides_content_and_ids(encrypted_vault: Vault, tmp_path: Path) -> None:
    secret = b"my very secret document " * 1000
    ids = encrypted_vault.store_bytes(secret)

    stored = b"".join(p.read_bytes() for p in (tmp_path / "secret-vault").rglob("*") if p.is_file())
    assert b"secret document" not in stored
    assert blake3.blake3(secret).digest() not in ids  # ids are keyed: they reveal nothing
    config = (tmp_path / "secret-vault" / "config").read_bytes()
    assert b"correct horse" not in config
    assert encrypted_vault.read_chunk(ids[0]) == secret

    reopened = Vault(tmp_path / "secret-vault", password="correct horse")
    assert reopened.read_chunk(ids[0]) == secret


def test_wrong_or_missing_password_is_refused_clearly(
    encrypted_vault: Vault, tmp_path: Path
) -> None:
    root = tmp_path / "secret-vault"
    with pytest.raises(WrongPassword, match="wrong password for this vault"):
        Vault(root, password="battery staple")
    with pytest.raises(PasswordRequired, match="encrypted: a password is required"):
        Vault(root)
    with pytest.raises(PasswordRequired, match="always encrypted"):
        Vault(tmp_path / "plain")
    assert Vault.check_password(root, "correct horse")
    assert not Vault.check_password(root, "battery staple")


def test_change_password_rewraps_the_key_and_keeps_the_data(
    encrypted_vault: Vault, tmp_path: Path
) -> None:
    ids = encrypted_vault.store_bytes(b"kept across a password change")
    with pytest.raises(WrongPassword):
        encrypted_vault.change_password("not the old one", "new secret")

    encrypted_vault.change_password("correct horse", "new secret")

    root = tmp_path / "secret-vault"
    with pytest.raises(WrongPassword):
        Vault(root, password="correct horse")
    assert Vault(root, password="new secret").read_chunk(ids[0]) == b"kept across a password change"


def test_damaged_chunk_is_detected_never_returned(encrypted_vault: Vault, tmp_path: Path) -> None:
    (chunk,) = encrypted_vault.store_bytes(b"x" * 5000)
    (pack,) = (tmp_path / "secret-vault" / "packs").rglob("*/*")
    data = bytearray(pack.read_bytes())
    data[20] ^= 0x01
    pack.write_bytes(bytes(data))

    with pytest.raises(ChunkError, match="corrupt"):
        Vault(tmp_path / "secret-vault", password="correct horse").read_chunk(chunk)
    with pytest.raises(ChunkError, match="missing"):
        encrypted_vault.read_chunk(b"\0" * 32)


def test_allocate_counts_up_and_never_reuses_ids(vault: Vault, tmp_path: Path) -> None:
    assert [vault.allocate() for _ in range(3)] == [1, 2, 3]
    # Another Vault object on the same folder (another process) continues after them.
    assert Vault(tmp_path / "vault", password=PASSWORD, kdf=FAST_KDF).allocate() == 4


def test_concurrent_allocations_get_distinct_ids(tmp_path: Path) -> None:
    Vault(tmp_path / "vault", password=PASSWORD, kdf=FAST_KDF)
    got: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def allocate_some() -> None:
        vault = Vault(tmp_path / "vault", password=PASSWORD, kdf=FAST_KDF)
        start.wait(timeout=10)
        for _ in range(10):
            snapshot_id = vault.allocate()
            with lock:
                got.append(snapshot_id)

    threads = [threading.Thread(target=allocate_some) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(got) == list(range(1, 81))


def test_manifest_round_trip_and_size(vault: Vault) -> None:
    chunks = vault.store_bytes(b"content")
    entries = [
        Entry(path=b"/data", kind="dir", mode=0o755, mtime_ns=5),
        Entry(path=b"/data/caf\xe9", kind="file", mode=0o600, mtime_ns=6, size=7, chunks=chunks),
        Entry(path=b"/data/l", kind="symlink", mode=0o777, mtime_ns=7, target=b"\xff/x"),
    ]
    snapshot_id = vault.allocate()
    size = vault.write_manifest(snapshot_id, manifest(snapshot_id, entries))

    info = vault.read_info(snapshot_id)
    stored = (vault.root / "snapshots" / f"{snapshot_id}.manifest").stat().st_size
    assert size == stored + info.tree_size
    assert (info.files, info.file_bytes, info.entry_count) == (1, 7, 3)
    assert vault.read_manifest(snapshot_id) == manifest(snapshot_id, entries)
    assert list(vault.iter_entries(snapshot_id)) == entries
    assert vault.list_snapshots() == [snapshot_id]
    assert tmp_leftovers(vault.root) == []


def test_large_manifests_stream_in_many_chunks(vault: Vault) -> None:
    entries = [
        Entry(path=b"/data/f%07d" % i, kind="file", mode=0o644, mtime_ns=i, size=0)
        for i in range(150_000)  # ~5 MB of entries: above the largest chunk, whatever the seed
    ]
    snapshot_id = vault.allocate()
    vault.write_manifest(snapshot_id, manifest(snapshot_id, entries))

    assert len(vault.read_info(snapshot_id).tree) > 1
    assert list(vault.iter_entries(snapshot_id)) == entries


def test_only_snapshots_with_a_manifest_are_listed(vault: Vault) -> None:
    first, second, third = vault.allocate(), vault.allocate(), vault.allocate()
    vault.write_manifest(third, manifest(third))
    vault.write_manifest(first, manifest(first))
    assert vault.list_snapshots() == [first, third]
    with pytest.raises(SnapshotNotFound):
        vault.read_manifest(second)
    with pytest.raises(SnapshotNotFound):
        vault.read_manifest(0)


def test_manifest_is_written_once_and_only_for_allocated_ids(vault: Vault) -> None:
    snapshot_id = vault.allocate()
    vault.write_manifest(snapshot_id, manifest(snapshot_id))
    with pytest.raises(FileExistsError):
        vault.write_manifest(snapshot_id, manifest(snapshot_id))
    with pytest.raises(ValueError, match="not allocated"):
        vault.write_manifest(99, manifest(99))
    other = vault.allocate()
    with pytest.raises(ValueError, match="manifest is for snapshot"):
        vault.write_manifest(other, manifest(snapshot_id))


def test_foreign_formats_are_rejected(vault: Vault, tmp_path: Path) -> None:
    snapshot_id = vault.allocate()
    vault.put_object(f"snapshots/{snapshot_id}.manifest", msgspec.msgpack.encode({"format": 99}))
    with pytest.raises(msgspec.ValidationError):
        vault.read_manifest(snapshot_id)
    # A vault of the first format (whole-file blobs) is refused, not silently mixed with.
    old = tmp_path / "old-vault"
    (old / "snapshots").mkdir(parents=True)
    (old / "snapshots" / "1.manifest").write_bytes(b"\x80")
    with pytest.raises(VaultError, match="older format"):
        Vault(old, password=PASSWORD, kdf=FAST_KDF)
    with pytest.raises(VaultError, match="no vault at"):
        Vault(tmp_path / "nothing-here", create=False)


def test_password_files_must_be_private(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    assert read_vault_password(keys, "vault-1") is None  # no file (yet)
    key = keys / "vault-1.key"
    key.write_text("s3cret\n")
    key.chmod(0o644)
    with pytest.raises(VaultError, match="chmod 600"):
        read_vault_password(keys, "vault-1")
    key.chmod(0o600)
    assert read_vault_password(keys, "vault-1") == "s3cret"
    with pytest.raises(VaultError, match="invalid vault id"):
        read_vault_password(keys, "../etc/passwd")
    os.symlink(key, keys / "vault-2.key")
    with pytest.raises(VaultError, match="symbolic link"):
        read_vault_password(keys, "vault-2")


def test_cheap_kdf_parameters_are_kept_in_the_vault(encrypted_vault: Vault) -> None:
    assert encrypted_vault.config.encryption is not None
    assert encrypted_vault.config.encryption.kdf_params == FAST_KDF
    assert encrypted_vault.encrypted


def test_the_compiled_chunker_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyfastcdc
    import pyfastcdc.py

    from cloudbackup.engine.chunking import ChunkerParams, new_chunker

    assert pyfastcdc.FastCDC.__module__.startswith("pyfastcdc.cy")  # the native one loaded
    monkeypatch.setattr(pyfastcdc, "FastCDC", pyfastcdc.py.FastCDC)  # the ~400x slower one
    with pytest.raises(RuntimeError, match="compiled extension did not load"):
        new_chunker(ChunkerParams(), 0)
