"""The index: which pack holds which chunk, where in it, and how the chunk is encoded.

On disk an index object (``index/<32 hex>``, zstd-compressed, then sealed under its name by the
vault) lists a batch of packs with their blobs; the vault's index is the union of every index
object. In memory :class:`Index` keeps one int per chunk, so even a large vault's index fits
comfortably.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Final, NamedTuple

import msgspec

INDEX_PREFIX: Final = "index/"
#: The layout of an index object; sealing (the vault's format) does not change it.
INDEX_FORMAT: Final = 2


class BlobRef(msgspec.Struct, frozen=True, array_like=True):
    """One chunk inside a pack: its id, where its stored bytes are, and how they are encoded."""

    id: bytes
    offset: int
    length: int
    raw_length: int
    compressed: bool


class IndexPack(msgspec.Struct, frozen=True):
    id: str
    size: int
    blobs: list[BlobRef]


class IndexFile(msgspec.Struct, frozen=True, kw_only=True):
    """One index object. ``writer`` is the lock id of the backup that wrote it (None: a prune)."""

    format: int = INDEX_FORMAT
    writer: str | None = None
    packs: list[IndexPack]


def encode_index_file(packs: list[IndexPack], writer: str | None) -> bytes:
    return msgspec.msgpack.encode(IndexFile(writer=writer, packs=packs))


def decode_index_file(data: bytes) -> IndexFile:
    return msgspec.msgpack.decode(data, type=IndexFile)


class Location(NamedTuple):
    pack: str
    offset: int
    length: int
    compressed: bool


class Index:
    """Chunk id → location and plaintext length, compact: one int per chunk (about 160 bytes
    per entry in all)."""

    def __init__(self) -> None:
        self.packs: list[str] = []
        self._pack_no: dict[str, int] = {}
        self._chunks: dict[bytes, int] = {}
        self._lock = threading.Lock()  # writers of data and of metadata add concurrently

    @classmethod
    def of(cls, packs: Iterable[IndexPack]) -> Index:
        """An index of ``packs``; of a chunk in several, the first pack listed is its home."""
        index = cls()
        for pack in packs:
            index.add(pack.id, pack.blobs)
        return index

    def add(self, pack_id: str, blobs: Iterable[BlobRef]) -> None:
        with self._lock:
            no = self._pack_no.get(pack_id)
            if no is None:
                no = len(self.packs)
                self.packs.append(pack_id)
                self._pack_no[pack_id] = no
            chunks = self._chunks
            for b in blobs:
                if b.id not in chunks:
                    packed = (no << 97) | (b.raw_length << 65) | (b.offset << 33)
                    chunks[b.id] = packed | (b.length << 1) | int(b.compressed)

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._chunks

    def has_all(self, chunk_ids: Iterable[bytes]) -> bool:
        """Whether every one of ``chunk_ids`` is indexed (one call per file, not per chunk)."""
        return all(map(self._chunks.__contains__, chunk_ids))

    def __len__(self) -> int:
        return len(self._chunks)

    def get(self, chunk_id: bytes) -> Location | None:
        packed = self._chunks.get(chunk_id)
        if packed is None:
            return None
        return Location(
            self.packs[packed >> 97],
            (packed >> 33) & 0xFFFFFFFF,
            (packed >> 1) & 0xFFFFFFFF,
            bool(packed & 1),
        )

    def plain_length(self, chunk_id: bytes) -> int | None:
        """The length of a chunk's plaintext (where a file's next chunk starts), or None."""
        packed = self._chunks.get(chunk_id)
        return None if packed is None else (packed >> 65) & 0xFFFFFFFF
