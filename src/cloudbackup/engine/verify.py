"""Verify a vault (spec §5): read packs back, check every chunk, name the files damage hits.

Every chunk of a chosen pack is decrypted, decompressed and re-hashed; the pack as a whole is
checked against its name. Every chunk a snapshot needs must be indexed and its pack present.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

import msgspec

from cloudbackup.engine.errors import ChunkError, VerifyStopped, path_str
from cloudbackup.engine.index import BlobRef, Index, IndexPack
from cloudbackup.engine.packs import pack_id_of, pack_name
from cloudbackup.engine.snapshot import SnapshotInfo
from cloudbackup.engine.vault import Vault


class SnapshotFile(msgspec.Struct, frozen=True):
    snapshot_id: int
    path: str


class DamagedChunk(msgspec.Struct, frozen=True):
    chunk_id: str  # hex; empty for damage outside any chunk (a pack header)
    pack: str | None
    reason: str
    files: list[SnapshotFile] = msgspec.field(default_factory=list)


class VerifyProgress(msgspec.Struct, frozen=True):
    packs_done: int
    packs_total: int
    bytes_done: int
    damaged: int


class VerifyReport(msgspec.Struct, frozen=True):
    packs_checked: int
    packs_total: int
    chunks_checked: int
    bytes_checked: int
    snapshots_checked: int
    damaged: list[DamagedChunk]
    duration_seconds: float

    @property
    def ok(self) -> bool:
        return not self.damaged


def verify(
    vault: Vault,
    *,
    sample_fraction: float = 1.0,
    on_progress: Callable[[VerifyProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    seed: int | None = None,
) -> VerifyReport:
    """Read back packs (all, or a random ``sample_fraction`` of them) and check every chunk;
    check that every chunk a snapshot needs is indexed and its pack exists. Each damaged chunk
    is reported with the files of every snapshot that use it."""
    if not 0.0 < sample_fraction <= 1.0:
        raise ValueError("sample_fraction must be greater than 0 and at most 1")
    started = time.monotonic()
    damaged: dict[bytes, DamagedChunk] = {}
    pack_damage: list[DamagedChunk] = []

    listed = vault.pack_sizes()
    index, pack_refs = _read_index(vault)

    # Snapshots: every chunk they reference must be locatable.
    infos = vault.snapshot_infos()
    for info in infos:
        _check_snapshot(vault, info, index, listed, damaged)

    chosen = _sample(sorted(p for p in pack_refs if p in listed), sample_fraction, seed)
    chunks_checked = 0
    bytes_checked = 0

    def report(done: int) -> None:
        if on_progress is not None:
            on_progress(
                VerifyProgress(
                    packs_done=done,
                    packs_total=len(chosen),
                    bytes_done=bytes_checked,
                    damaged=len(damaged) + len(pack_damage),
                )
            )
        if should_stop is not None and should_stop():
            raise VerifyStopped("stop requested")

    report(0)
    for done, pack_id in enumerate(chosen, 1):
        read, problem = _check_pack(vault, pack_refs[pack_id], damaged)
        bytes_checked += read
        chunks_checked += len(pack_refs[pack_id].blobs)
        if problem is not None:
            pack_damage.append(problem)
        report(done)

    if damaged:
        _name_files(vault, infos, index, damaged)
    return VerifyReport(
        packs_checked=len(chosen),
        packs_total=len(listed),
        chunks_checked=chunks_checked,
        bytes_checked=bytes_checked,
        snapshots_checked=len(infos),
        damaged=[*damaged.values(), *pack_damage],
        duration_seconds=time.monotonic() - started,
    )


def _read_index(vault: Vault) -> tuple[Index, dict[str, IndexPack]]:
    """The index of every index object, and every indexed pack (its first listing) by id."""
    packs = [pack for _name, file in vault.index_files() for pack in file.packs]
    pack_refs: dict[str, IndexPack] = {}
    for pack in packs:
        pack_refs.setdefault(pack.id, pack)
    return Index.of(packs), pack_refs


def _sample(candidates: list[str], fraction: float, seed: int | None) -> list[str]:
    """A random ``fraction`` of ``candidates`` (at least one), or all of them."""
    count = min(len(candidates), max(1, math.ceil(len(candidates) * fraction)))
    if count == len(candidates):
        return candidates
    return random.Random(seed).sample(candidates, count)


def _check_pack(
    vault: Vault, ref: IndexPack, damaged: dict[bytes, DamagedChunk]
) -> tuple[int, DamagedChunk | None]:
    """Read a pack back and check each of its chunks, adding the damaged ones to ``damaged``;
    returns the bytes read and the damage found outside its chunks (None: none)."""
    try:
        data = vault.storage.get(pack_name(ref.id))
    except FileNotFoundError:
        data = b""
    bad_in_pack = 0
    for blob in ref.blobs:
        problem = _check_blob(vault, blob, data)
        if problem is not None:
            bad_in_pack += 1
            damaged.setdefault(
                blob.id, DamagedChunk(chunk_id=blob.id.hex(), pack=ref.id, reason=problem)
            )
    if bad_in_pack or pack_id_of(data) == ref.id:
        return len(data), None
    return len(data), DamagedChunk(
        chunk_id="",
        pack=ref.id,
        reason="pack checksum mismatch outside its chunks (header or padding)",
    )


def _check_blob(vault: Vault, blob: BlobRef, data: bytes) -> str | None:
    if not data:
        return "missing: its pack is gone"
    stored = data[blob.offset : blob.offset + blob.length]
    if len(stored) != blob.length:
        return "corrupt: its pack is truncated"
    try:
        vault.decode_chunk(blob.id, stored, blob.compressed)
    except ChunkError as exc:
        return f"corrupt: {str(exc).split(': ', 1)[-1]}"
    return None


def _check_snapshot(
    vault: Vault,
    info: SnapshotInfo,
    index: Index,
    listed: dict[str, int],
    damaged: dict[bytes, DamagedChunk],
) -> None:
    def locate(chunk_id: bytes) -> None:
        loc = index.get(chunk_id)
        if loc is None:
            damaged.setdefault(
                chunk_id, DamagedChunk(chunk_id.hex(), None, "missing: not in the index")
            )
        elif loc.pack not in listed:
            damaged.setdefault(
                chunk_id, DamagedChunk(chunk_id.hex(), loc.pack, "missing: its pack is gone")
            )

    for chunk_id in info.tree:
        locate(chunk_id)
    try:
        for entry in vault.iter_entries(info, index=index):
            for chunk_id in entry.chunks:
                locate(chunk_id)
    except (ChunkError, msgspec.DecodeError) as exc:
        tree_id = exc.chunk_id if isinstance(exc, ChunkError) else b""
        damaged.setdefault(
            tree_id or info.snapshot_id.to_bytes(8, "big"),
            DamagedChunk(
                chunk_id=tree_id.hex(),
                pack=None,
                reason=f"snapshot {info.snapshot_id}'s file list is unreadable: {exc}",
                files=[SnapshotFile(info.snapshot_id, "(the snapshot's list of files)")],
            ),
        )


def _name_files(
    vault: Vault, infos: list[SnapshotInfo], index: Index, damaged: dict[bytes, DamagedChunk]
) -> None:
    """Fill in, for each damaged chunk, every snapshot file that uses it."""
    files: dict[bytes, list[SnapshotFile]] = {chunk_id: [] for chunk_id in damaged}
    for info in infos:
        tree_hit = [c for c in info.tree if c in files]
        for chunk_id in tree_hit:
            files[chunk_id].append(SnapshotFile(info.snapshot_id, "(the snapshot's list of files)"))
        if tree_hit:
            continue  # its entries cannot be trusted; the tree damage says it all
        try:
            for entry in vault.iter_entries(info, index=index):
                for chunk_id in entry.chunks:
                    hits = files.get(chunk_id)
                    if hits is not None:
                        hits.append(SnapshotFile(info.snapshot_id, path_str(entry.path)))
        except (ChunkError, msgspec.DecodeError):
            continue
    for chunk_id, found in files.items():
        current = damaged[chunk_id]
        merged = [*current.files, *(f for f in found if f not in current.files)]
        damaged[chunk_id] = msgspec.structs.replace(current, files=merged)
