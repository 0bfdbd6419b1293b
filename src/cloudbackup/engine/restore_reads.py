"""Reading the chunks of a batch of small files at once: in few ranges of their packs.

A backup writes the chunks of consecutive small files one after the other in the same pack, so
a restore's batch of small files (``engine/restore_batches.py``) usually needs one stretch of
one pack. Reading it as one range costs one read (one request, for a remote store) instead of
one per chunk. Every chunk is still decrypted, decompressed and checked against its id before
use (``Vault.decode_chunk``); a chunk that cannot be read comes back as its :class:`ChunkError`,
for the file needing it to report, never as data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from cloudbackup.engine.errors import ChunkError
from cloudbackup.engine.index import Location
from cloudbackup.engine.packs import pack_name
from cloudbackup.engine.vault import Vault

#: Two chunks of a pack closer than this are read in one range (the bytes between are dropped).
GAP_BYTES: Final = 64 * 1024
#: One range reads at most this much (but one chunk).
RANGE_BYTES: Final = 8 * 1024 * 1024

#: A chunk's plaintext, or why it could not be had.
ChunkData = bytes | ChunkError


def read_chunks(vault: Vault, chunk_ids: Iterable[bytes]) -> dict[bytes, ChunkData]:
    """The plaintext of each chunk in ``chunk_ids``, read in coalesced ranges of their packs."""
    found: dict[bytes, ChunkData] = {}
    by_pack: dict[str, list[tuple[int, int, bytes, bool]]] = {}
    index = vault.index()
    for chunk_id in chunk_ids:
        if chunk_id in found:
            continue
        loc: Location | None = index.get(chunk_id)
        if loc is None:
            loc = vault.locate(chunk_id)  # written since the index was loaded? looks once more
            if loc is None:
                found[chunk_id] = ChunkError(chunk_id, "missing", "not in the index")
                continue
            index = vault.index()
        found[chunk_id] = b""  # a placeholder: each id is read once
        by_pack.setdefault(loc.pack, []).append((loc.offset, loc.length, chunk_id, loc.compressed))
    for pack, blobs in by_pack.items():
        blobs.sort()
        start = 0
        while start < len(blobs):
            end = start + 1
            first = blobs[start][0]
            stop = first + blobs[start][1]
            while end < len(blobs):
                offset, length = blobs[end][0], blobs[end][1]
                if offset - stop > GAP_BYTES or offset + length - first > RANGE_BYTES:
                    break
                stop = max(stop, offset + length)
                end += 1
            _read_range(vault, pack, first, stop, blobs[start:end], found)
            start = end
    return found


def _read_range(
    vault: Vault,
    pack: str,
    first: int,
    stop: int,
    blobs: list[tuple[int, int, bytes, bool]],
    found: dict[bytes, ChunkData],
) -> None:
    """Read ``[first, stop)`` of ``pack`` and decode the ``blobs`` it holds into ``found``."""
    try:
        data = vault.storage.get_range(pack_name(pack), first, stop - first)
    except FileNotFoundError:
        for _offset, _length, chunk_id, _compressed in blobs:
            found[chunk_id] = ChunkError(chunk_id, "missing", f"pack {pack} is gone")
        return
    for offset, length, chunk_id, compressed in blobs:
        at = offset - first
        if at + length > len(data):
            found[chunk_id] = ChunkError(chunk_id, "corrupt", f"pack {pack} is truncated")
            continue
        try:
            found[chunk_id] = vault.decode_chunk(chunk_id, data[at : at + length], compressed)
        except ChunkError as exc:
            found[chunk_id] = exc
