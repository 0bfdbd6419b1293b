"""Pack objects: many stored chunks in one object, and the writer that fills them.

A pack (``packs/<2 hex>/<64 hex>``) is 16 random bytes, its chunks' stored bytes back to back,
then its sealed header (the list of :class:`BlobRef`), then the header's 4-byte length. It is
named by the BLAKE3 of the whole object, so reading it back checks the pack as a whole too.

What each sealed part is bound to (format 3's associated data): a chunk's stored bytes to the
chunk's id, so a repack copies them as they are; the header to the pack's 16 random leading
bytes, since the pack's name (a hash of every byte, the header's too) is not known when it is
sealed. A pack copied onto another pack's name is caught either way: its chunks do not open under
the ids the index expects there, and its bytes do not hash to that name (``check_pack_name``).
"""

from __future__ import annotations

import os
import struct
import threading
from typing import TYPE_CHECKING, Final

import blake3
import msgspec

from cloudbackup.engine.crypto import DecryptError, Sealer
from cloudbackup.engine.errors import VaultError
from cloudbackup.engine.index import BlobRef, Index, IndexPack

if TYPE_CHECKING:
    from cloudbackup.engine.vault import Vault

#: A pack is closed once it holds this many bytes (restic's default too).
PACK_TARGET: Final = 16 * 1024 * 1024
#: A writer writes an index object after this many packs (and at its end).
INDEX_EVERY_PACKS: Final = 64
PACK_PREFIX: Final = "packs/"
_LEN = struct.Struct("<I")
#: Random bytes a pack starts with.
_PREFIX_SIZE: Final = 16
_encoder = msgspec.msgpack.Encoder()


def pack_name(pack_id: str) -> str:
    return f"{PACK_PREFIX}{pack_id[:2]}/{pack_id}"


def pack_id_of(data: bytes) -> str:
    """The id of a pack object: the BLAKE3 of its bytes."""
    return blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest()


def check_pack_name(pack_id: str, data: bytes) -> None:
    """``VaultError`` naming the object unless ``data`` is the pack ``pack_id`` is the name of."""
    if pack_id_of(data) != pack_id:
        raise VaultError(f"object {pack_name(pack_id)} is not the pack of that name")


def _header_ad(data: bytes | bytearray) -> bytes:
    return b"pack header " + bytes(data[:_PREFIX_SIZE])


def read_pack_header(sealer: Sealer, data: bytes) -> list[BlobRef]:
    """The blob list a pack carries at its end (``VaultError`` if unreadable)."""
    if len(data) < _LEN.size + _PREFIX_SIZE:
        raise VaultError("pack too short")
    (size,) = _LEN.unpack_from(data, len(data) - _LEN.size)
    start = len(data) - _LEN.size - size
    if start < _PREFIX_SIZE:
        raise VaultError("pack header length is out of range")
    try:
        plain = sealer.open(data[start : len(data) - _LEN.size], _header_ad(data))
        return msgspec.msgpack.decode(plain, type=list[BlobRef])
    except (DecryptError, msgspec.DecodeError) as exc:
        raise VaultError(f"pack header is damaged: {exc}") from exc


class _PackBuilder:
    def __init__(self) -> None:
        # 16 random bytes first: two packs never share a name (their BLAKE3), even with the same
        # chunks, so a pack a prune has planned to delete is never re-created under its name.
        self.data = bytearray(os.urandom(_PREFIX_SIZE))
        self.blobs: list[BlobRef] = []

    def add(self, chunk_id: bytes, blob: bytes, raw_length: int, compressed: bool) -> None:
        self.blobs.append(BlobRef(chunk_id, len(self.data), len(blob), raw_length, compressed))
        self.data += blob

    def finish(self, sealer: Sealer) -> tuple[str, bytes]:
        header = sealer.seal(_encoder.encode(self.blobs), _header_ad(self.data))
        self.data += header
        self.data += _LEN.pack(len(header))
        data = bytes(self.data)
        self.data = bytearray()  # one copy of a 16 MiB pack in memory, not two
        return pack_id_of(data), data


class ChunkWriter:
    """Stores chunks for one writer: dedup against ``view``, pack, write packs and index.

    ``store`` may be called from several threads at once. A chunk is claimed before it is
    encoded, so two threads never store the same chunk twice; the snapshot referencing chunks
    must only be written after ``flush``.
    """

    def __init__(self, vault: Vault, view: Index, writer: str | None) -> None:
        self.vault = vault
        self.view = view
        self.writer = writer
        self._lock = threading.Lock()
        self._claimed: set[bytes] = set()
        self._pack = _PackBuilder()
        self._pending: list[IndexPack] = []
        # Chunks in packs written but not yet indexed: in the vault, but a later run cannot
        # find them (a checkpoint may only name files whose chunks are all indexed).
        self._unindexed: set[bytes] = set()
        self.packs_written = 0
        #: Plaintext bytes of the chunks this writer added that are in indexed packs.
        self.indexed_plain_bytes = 0
        # Plaintext and stored bytes of the chunks this writer added: how compressible new data
        # is (the ransomware guard compares it with the configuration's history).
        self.added_plain_bytes = 0
        self.added_stored_bytes = 0

    def store(self, data: bytes) -> tuple[bytes, bool]:
        """Store one chunk unless known; returns its id and whether it was new."""
        chunk_id = self.vault.sealer.chunk_id(data)
        if not self._claim(chunk_id):
            return chunk_id, False
        blob, compressed = self.vault.encode_chunk(chunk_id, data)
        self._add(chunk_id, blob, len(data), compressed)
        return chunk_id, True

    def add_stored(self, ref: BlobRef, blob: bytes) -> bool:
        """Copy an already encoded chunk (repacking); False when the view already has it."""
        if not self._claim(ref.id):
            return False
        self._add(ref.id, blob, ref.raw_length, ref.compressed)
        return True

    def _claim(self, chunk_id: bytes) -> bool:
        """Take ``chunk_id`` for this writer to store; False if known or taken already."""
        with self._lock:
            if chunk_id in self.view or chunk_id in self._claimed:
                return False
            self._claimed.add(chunk_id)
            return True

    def _add(self, chunk_id: bytes, blob: bytes, raw_length: int, compressed: bool) -> None:
        """Put a claimed chunk's stored bytes in the open pack; write the pack once it is full."""
        full = None
        with self._lock:
            self._pack.add(chunk_id, blob, raw_length, compressed)
            self.added_plain_bytes += raw_length
            self.added_stored_bytes += len(blob)
            if len(self._pack.data) >= PACK_TARGET:
                full, self._pack = self._pack, _PackBuilder()
        if full is not None:
            self._write_pack(full)

    def _write_pack(self, pack: _PackBuilder) -> None:
        pack_id, data = pack.finish(self.vault.sealer)
        self.vault.storage.put(pack_name(pack_id), data)
        batch: list[IndexPack] = []
        with self._lock:
            self.view.add(pack_id, pack.blobs)
            self._claimed.difference_update(b.id for b in pack.blobs)
            self._pending.append(IndexPack(pack_id, len(data), pack.blobs))
            self._unindexed.update(b.id for b in pack.blobs)
            self.packs_written += 1
            if len(self._pending) >= INDEX_EVERY_PACKS:
                batch, self._pending = self._pending, []
        self._write_index(batch)

    def _write_index(self, batch: list[IndexPack]) -> None:
        if not batch:
            return
        self.vault.write_index(batch, self.writer)
        with self._lock:
            for pack in batch:
                self._unindexed.difference_update(b.id for b in pack.blobs)
                self.indexed_plain_bytes += sum(b.raw_length for b in pack.blobs)

    def flush(self) -> None:
        """Write the open pack and the index of every pack not yet indexed."""
        self.index_now(min_open_bytes=1)
        self.vault.forget_cached_index()

    def index_now(self, *, min_open_bytes: int) -> None:
        """Make what is stored findable: write the open pack if it holds ``min_open_bytes`` or
        more, then the index of every written pack (a checkpoint's first step)."""
        with self._lock:
            pack = None
            if self._pack.blobs and len(self._pack.data) >= min_open_bytes:
                pack, self._pack = self._pack, _PackBuilder()
        if pack is not None:
            self._write_pack(pack)
        with self._lock:
            batch, self._pending = self._pending, []
        self._write_index(batch)

    def indexed(self, chunk_ids: tuple[bytes, ...]) -> bool:
        """Whether every chunk of ``chunk_ids`` is in an indexed pack (a later run finds it)."""
        view = self.view
        with self._lock:
            return all(c in view and c not in self._unindexed for c in chunk_ids)
