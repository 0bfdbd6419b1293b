"""The vault: content-addressed blobs, snapshot ids, manifests written atomically."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import blake3
import msgspec
import pytest
from engine_trees import blobs_in

from cloudbackup.engine import Entry, Manifest, PathItem, SnapshotNotFound, Vault


def manifest(snapshot_id: int, entries: list[Entry] | None = None) -> Manifest:
    return Manifest(
        snapshot_id=snapshot_id,
        created_ns=1,
        inclusions=[PathItem(type="folder", path="/data/")],
        exclusions=[],
        entries=entries or [],
    )


def test_put_stores_under_the_blake3_of_the_content(vault: Vault) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    digest = blake3.blake3(data).hexdigest()
    assert not vault.has(digest)

    result = vault.put_file(io.BytesIO(data))

    assert result == (digest, len(data), True)
    assert vault.has(digest)
    assert vault.blob_path(digest) == vault.root / "objects" / digest[:2] / digest
    with vault.open_blob(digest) as blob:
        assert blob.read() == data
    assert os.listdir(vault.root / "tmp") == []


def test_put_of_known_content_stores_nothing(vault: Vault) -> None:
    first = vault.put_blocks([b"abc", b"def"])
    again = vault.put_blocks([b"abcdef"])
    assert first.stored and not again.stored
    assert again.digest == first.digest
    assert blobs_in(vault.root) == {first.digest}
    assert os.listdir(vault.root / "tmp") == []


def test_empty_content_is_a_blob_too(vault: Vault) -> None:
    result = vault.put_blocks([])
    assert result == (blake3.blake3(b"").hexdigest(), 0, True)
    with vault.open_blob(result.digest) as blob:
        assert blob.read() == b""


def test_failing_source_leaves_nothing_behind(vault: Vault) -> None:
    def blocks() -> Iterator[bytes]:
        yield b"partial"
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        vault.put_blocks(blocks())
    assert blobs_in(vault.root) == set()
    assert os.listdir(vault.root / "tmp") == []


@pytest.mark.parametrize("digest", ["../../etc/passwd", "AB" * 32, "ab" * 31, "zz" * 32])
def test_only_hex_digests_name_blobs(vault: Vault, digest: str) -> None:
    with pytest.raises(ValueError):
        vault.blob_path(digest)
    with pytest.raises(ValueError):
        vault.open_blob(digest)


def test_allocate_counts_up_and_never_reuses_ids(vault: Vault, tmp_path: Path) -> None:
    assert [vault.allocate() for _ in range(3)] == [1, 2, 3]
    # Another Vault object on the same folder (another process) continues after them.
    assert Vault(tmp_path / "vault").allocate() == 4


def test_concurrent_allocations_get_distinct_ids(tmp_path: Path) -> None:
    got: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def allocate_some() -> None:
        vault = Vault(tmp_path / "vault")
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
    digest = vault.put_blocks([b"content"]).digest
    entries = [
        Entry(path=b"/data", kind="dir", mode=0o755, mtime_ns=5),
        Entry(path=b"/data/caf\xe9", kind="file", mode=0o600, mtime_ns=6, size=7, digest=digest),
        Entry(path=b"/data/l", kind="symlink", mode=0o777, mtime_ns=7, target=b"\xff/x"),
    ]
    snapshot_id = vault.allocate()
    size = vault.write_manifest(snapshot_id, manifest(snapshot_id, entries))

    assert size == (vault.root / "snapshots" / f"{snapshot_id}.manifest").stat().st_size
    assert vault.read_manifest(snapshot_id) == manifest(snapshot_id, entries)
    assert vault.list_snapshots() == [snapshot_id]
    assert os.listdir(vault.root / "tmp") == []


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


def test_foreign_manifest_format_is_rejected(vault: Vault) -> None:
    snapshot_id = vault.allocate()
    (vault.root / "snapshots" / f"{snapshot_id}.manifest").write_bytes(
        msgspec.msgpack.encode(msgspec.structs.replace(manifest(snapshot_id), format=99))
    )
    with pytest.raises(msgspec.ValidationError, match="unsupported manifest format 99"):
        vault.read_manifest(snapshot_id)
