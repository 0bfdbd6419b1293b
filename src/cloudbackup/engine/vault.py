"""A vault: chunks packed into pack objects, an index, and one snapshot object per snapshot.

Layout (object names in a :class:`~cloudbackup.engine.storage.Storage`)::

    config                   format, chunker bounds, compression, encryption (wrapped master
                             key), and since format 3 a MAC over all of it (see ``keys``)
    packs/<2 hex>/<64 hex>   16 random bytes, many chunks back to back, then the pack's sealed
                             header, then its 4-byte length; named by the BLAKE3 of the whole
                             pack object (so a read-back checks the pack as a whole too)
    index/<32 hex>           which chunk lives where, for a batch of packs (sealed, zstd)
    snapshots/<n>.lock       snapshot id n is taken (exclusive create, kept forever)
    snapshots/<n>.manifest   snapshot n is complete (sealed :class:`SnapshotInfo`)
    locks/<kind>-<id>        lease locks of running backups and prunes
    plans/<id>               packs a prune means to delete (see ``maintenance``)

Writes go in dependency order: packs, then the index naming them, then the snapshot object, so
whatever a crash leaves behind, a snapshot that exists has all its data. Every chunk read back is
decrypted, decompressed and re-hashed before use: damage is detected, never returned. Since
format 3 every sealed object is bound to its name (its associated data), so an object copied or
renamed onto another name fails to open (a :class:`VaultError` naming it).

:class:`Vault` is the facade; each part of the job has its module: ``keys`` (the config and
the master key), ``index`` (which pack holds which chunk), ``packs`` (pack objects and the
writer filling them) and ``locks`` (lease locks and prune plans). The vault seals and compresses
what they store and keeps the snapshots.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgspec
import zstandard

from cloudbackup.engine.chunking import ChunkerParams, Cutter, new_chunker
from cloudbackup.engine.crypto import DecryptError, KdfParams, Sealer
from cloudbackup.engine.errors import (
    ChunkError,
    NotEncrypted,
    PasswordRequired,
    SnapshotNotFound,
    VaultError,
    WrongPassword,
)
from cloudbackup.engine.index import (
    INDEX_PREFIX,
    BlobRef,
    Index,
    IndexFile,
    IndexPack,
    Location,
    decode_index_file,
    encode_index_file,
)
from cloudbackup.engine.keys import (
    CONFIG,
    NewVault,
    chunker_seed,
    open_config,
    rewrapped,
    sealer_of,
)
from cloudbackup.engine.locks import (
    LOCK_PREFIX,
    PLAN_PREFIX,
    LockInfo,
    Plan,
    VaultLock,
    read_locks,
)
from cloudbackup.engine.packs import (
    PACK_PREFIX,
    ChunkWriter,
    check_pack_name,
    pack_name,
    read_pack_header,
)
from cloudbackup.engine.snapshot import (
    Entry,
    Manifest,
    SnapshotInfo,
    decode_frames,
    decode_info,
    encode_frames,
    encode_info,
)
from cloudbackup.engine.storage import LocalStorage, Storage

# Names other modules and tests have always imported from here.
__all__ = ["ChunkError", "ChunkWriter", "Index", "LockInfo", "Plan", "Vault", "pack_name"]

_LOCK_SUFFIX: Final = ".lock"
_MANIFEST_SUFFIX: Final = ".manifest"
#: zstd level of metadata objects (chunks use the vault's configured level).
_OBJECT_LEVEL: Final = 3


class _Codec(threading.local):
    """zstd (de)compressors are not thread-safe: one pair per thread."""

    def __init__(self) -> None:
        self.levels: dict[int, zstandard.ZstdCompressor] = {}
        self.decompressor = zstandard.ZstdDecompressor()

    def compressor(self, level: int) -> zstandard.ZstdCompressor:
        c = self.levels.get(level)
        if c is None:
            c = self.levels[level] = zstandard.ZstdCompressor(level=level)
        return c


_codec = _Codec()


class Vault:
    """A vault in a storage backend; creates its config on first use. Safe for concurrent use.

    ``root`` is a local directory or any :class:`Storage`. A new vault is always encrypted, so
    creating one needs a ``password`` (``PasswordRequired`` without); so does opening one, except
    a format-2 vault made without a password, which opens as it is. ``kdf`` (at least
    ``crypto.KDF_FLOOR``) and ``compression_level`` only apply when the vault is created.
    """

    def __init__(
        self,
        root: Path | str | Storage,
        *,
        password: str | None = None,
        create: bool = True,
        kdf: KdfParams | None = None,
        compression_level: int = 1,
        chunker: ChunkerParams | None = None,
    ) -> None:
        self.storage: Storage = LocalStorage(root) if isinstance(root, str | os.PathLike) else root
        # For local vaults: the folder, so a backup never includes the vault in itself.
        self.root: Path = self.storage.local_root or Path("/nonexistent-remote-vault")
        new = NewVault(kdf=kdf or KdfParams(), compression_level=compression_level, chunker=chunker)
        self.config, master = open_config(self.storage, password, new if create else None)
        self.sealer: Sealer = sealer_of(self.config, master)
        self.chunker_seed = chunker_seed(master)
        self._index: Index | None = None
        self._index_lock = threading.Lock()

    # --- config and keys ---------------------------------------------------------------------

    @property
    def encrypted(self) -> bool:
        return self.config.encryption is not None

    @staticmethod
    def check_password(root: Path | str | Storage, password: str) -> bool:
        """True when ``password`` opens the encrypted vault at ``root`` (spec V5/V6)."""
        try:
            Vault(root, password=password, create=False)
        except (WrongPassword, NotEncrypted, PasswordRequired):
            return False
        return True

    def change_password(self, old: str, new: str, *, kdf: KdfParams | None = None) -> None:
        """Re-wrap the master key under ``new`` (with scrypt cost ``kdf``, None: the vault's);
        no data is rewritten (``keys.rewrapped``)."""
        self.config, stored = rewrapped(self.config, old, new, kdf=kdf)
        self.storage.put(CONFIG, stored)

    def new_cutter(self) -> Cutter:
        return Cutter(new_chunker(self.config.chunker, self.chunker_seed))

    # --- sealed objects ------------------------------------------------------------------------

    def put_object(self, name: str, data: bytes, *, compress: bool = True) -> int:
        """Compress, seal and write a metadata object; returns its stored size."""
        if compress:
            data = _codec.compressor(_OBJECT_LEVEL).compress(data)
        sealed = self.sealer.seal(data, name.encode())
        self.storage.put(name, sealed)
        return len(sealed)

    def get_object(self, name: str, *, compressed: bool = True) -> bytes:
        raw = self.storage.get(name)
        try:
            data = self.sealer.open(raw, name.encode())
            return _codec.decompressor.decompress(data) if compressed else data
        except (DecryptError, zstandard.ZstdError) as exc:
            raise VaultError(
                f"object {name} is damaged or was not written under that name: {exc}"
            ) from exc

    # --- chunks --------------------------------------------------------------------------------

    def encode_chunk(self, chunk_id: bytes, data: bytes) -> tuple[bytes, bool]:
        """The stored form of a chunk: zstd when that is smaller, then sealed to its id."""
        compressed = False
        level = self.config.compression_level
        if level > 0 and len(data) > 64:
            packed = _codec.compressor(level).compress(data)
            if len(packed) < len(data):
                data, compressed = packed, True
        return self.sealer.seal(data, chunk_id), compressed

    def decode_chunk(self, chunk_id: bytes, stored: bytes, compressed: bool) -> bytes:
        """The plaintext of a stored chunk, checked against its id; raises ``ChunkError``."""
        try:
            data = self.sealer.open(stored, chunk_id)
            if compressed:
                data = _codec.decompressor.decompress(data)
        except (DecryptError, zstandard.ZstdError) as exc:
            raise ChunkError(chunk_id, "corrupt", str(exc)) from exc
        if self.sealer.chunk_id(data) != chunk_id:
            raise ChunkError(chunk_id, "corrupt", "content does not match its id")
        return data

    def index(self, *, refresh: bool = False) -> Index:
        """The index of every pack (cached; ``refresh`` reloads it)."""
        cached = self._index
        if cached is not None and not refresh:
            return cached  # the hot path of every chunk read: no lock
        with self._index_lock:
            if self._index is None or refresh:
                self._index = self.load_index()
            return self._index

    def locate(self, chunk_id: bytes) -> Location | None:
        loc = self.index().get(chunk_id)
        if loc is None:
            # Written by someone else since the index was loaded? Look once more.
            loc = self.index(refresh=True).get(chunk_id)
        return loc

    def read_chunk(self, chunk_id: bytes, index: Index | None = None) -> bytes:
        """A chunk's plaintext; ``ChunkError`` if it is missing or damaged."""
        loc = self.locate(chunk_id) if index is None else index.get(chunk_id)
        if loc is None:
            raise ChunkError(chunk_id, "missing", "not in the index")
        try:
            stored = self.storage.get_range(pack_name(loc.pack), loc.offset, loc.length)
        except FileNotFoundError as exc:
            raise ChunkError(chunk_id, "missing", f"pack {loc.pack} is gone") from exc
        if len(stored) != loc.length:
            raise ChunkError(chunk_id, "corrupt", f"pack {loc.pack} is truncated")
        return self.decode_chunk(chunk_id, stored, loc.compressed)

    def store_bytes(self, data: bytes) -> tuple[bytes, ...]:
        """Chunk and store ``data`` now (tests and small metadata); returns its chunk ids."""
        writer = ChunkWriter(self, self.index(), writer=None)
        cutter = self.new_cutter()
        ids = [writer.store(c)[0] for c in [*cutter.feed(data), *cutter.finish()]]
        writer.flush()
        return tuple(ids)

    # --- index ---------------------------------------------------------------------------------

    def index_files(self) -> Iterator[tuple[str, IndexFile]]:
        """Every index object; one deleted while listed (by a prune) is skipped."""
        for info in self.storage.list(INDEX_PREFIX):
            try:
                data = self.get_object(info.name)
            except FileNotFoundError:
                continue
            yield info.name, decode_index_file(data)

    def load_index(self, *, exclude: frozenset[str] = frozenset()) -> Index:
        return Index.of(
            pack
            for _name, file in self.index_files()
            for pack in file.packs
            if pack.id not in exclude
        )

    def write_index(self, packs: list[IndexPack], writer: str | None) -> str:
        name = f"{INDEX_PREFIX}{secrets.token_hex(16)}"
        self.put_object(name, encode_index_file(packs, writer))
        return name

    def forget_cached_index(self) -> None:
        with self._index_lock:
            self._index = None

    def pack_sizes(self) -> dict[str, int]:
        """Every pack object there is: its id → its size."""
        return {info.name.rsplit("/", 1)[-1]: info.size for info in self.storage.list(PACK_PREFIX)}

    def read_pack_header(self, pack_id: str, data: bytes) -> list[BlobRef]:
        """The blob list the pack ``pack_id`` (its bytes ``data``) carries at its end;
        ``VaultError`` if unreadable or if ``data`` is not the pack of that name."""
        check_pack_name(pack_id, data)
        return read_pack_header(self.sealer, data)

    # --- snapshots -----------------------------------------------------------------------------

    def allocate(self) -> int:
        """Reserve the next snapshot id (1, 2, ...); concurrent callers always get distinct ids."""
        candidate = max(self._ids(_LOCK_SUFFIX) | self._ids(_MANIFEST_SUFFIX), default=0) + 1
        while not self.storage.create(
            f"snapshots/{candidate}{_LOCK_SUFFIX}", f"{os.getpid()}\n".encode()
        ):
            # Someone else took it between our listing and our create: try the next one.
            candidate += 1
        return candidate

    def write_snapshot(self, info: SnapshotInfo) -> int:
        """Publish a snapshot (the last write of a backup); returns the object's size."""
        sid = info.snapshot_id
        if not self._exists(f"snapshots/{sid}{_LOCK_SUFFIX}"):
            raise ValueError(f"snapshot id {sid} was not allocated")
        name = f"snapshots/{sid}{_MANIFEST_SUFFIX}"
        if self._exists(name):
            raise FileExistsError(f"snapshot {sid} already has a manifest")
        return self.put_object(name, encode_info(info))

    def write_manifest(self, snapshot_id: int, manifest: Manifest) -> int:
        """Store a complete manifest (its entries as a tree) and publish it; returns the size
        of the snapshot's metadata (snapshot object plus tree)."""
        if manifest.snapshot_id != snapshot_id:
            raise ValueError(f"manifest is for snapshot {manifest.snapshot_id}, not {snapshot_id}")
        stream = b"".join(encode_frames(manifest.entries))
        tree = self.store_bytes(stream) if stream else ()
        info = SnapshotInfo(
            snapshot_id=snapshot_id,
            created_ns=manifest.created_ns,
            inclusions=manifest.inclusions,
            exclusions=manifest.exclusions,
            errors=manifest.errors,
            tree=list(tree),
            entry_count=len(manifest.entries),
            tree_size=len(stream),
            files=sum(1 for e in manifest.entries if e.kind == "file"),
            file_bytes=sum(e.size for e in manifest.entries if e.kind == "file"),
        )
        return self.write_snapshot(info) + len(stream)

    def read_info(self, snapshot_id: int) -> SnapshotInfo:
        """A complete snapshot's object; :class:`SnapshotNotFound` if there is none."""
        if snapshot_id < 1:
            raise SnapshotNotFound(snapshot_id)
        try:
            data = self.get_object(f"snapshots/{snapshot_id}{_MANIFEST_SUFFIX}")
        except FileNotFoundError:
            raise SnapshotNotFound(snapshot_id) from None
        return decode_info(data)

    def iter_entries(
        self, snapshot_id: int | SnapshotInfo, *, index: Index | None = None
    ) -> Iterator[Entry]:
        """Stream a snapshot's entries in walk order (``ChunkError`` if its tree is damaged)."""
        info = snapshot_id if isinstance(snapshot_id, SnapshotInfo) else self.read_info(snapshot_id)
        return decode_frames(self.read_chunk(cid, index) for cid in info.tree)

    def read_manifest(self, snapshot_id: int) -> Manifest:
        """A snapshot with all its entries in memory."""
        info = self.read_info(snapshot_id)
        return Manifest(
            snapshot_id=info.snapshot_id,
            created_ns=info.created_ns,
            inclusions=info.inclusions,
            exclusions=info.exclusions,
            entries=list(self.iter_entries(info)),
            errors=info.errors,
        )

    def snapshot_infos(self) -> list[SnapshotInfo]:
        """The objects of every complete snapshot, ascending."""
        infos: list[SnapshotInfo] = []
        for snapshot_id in self.list_snapshots():
            try:
                infos.append(self.read_info(snapshot_id))
            except SnapshotNotFound:
                continue  # forgotten between the listing and the read
        return infos

    def list_snapshots(self) -> list[int]:
        """Ids of complete snapshots (those whose manifest exists), ascending."""
        return sorted(self._ids(_MANIFEST_SUFFIX))

    def delete_snapshot(self, snapshot_id: int) -> bool:
        """Remove a snapshot's object (its id stays taken); False if there was none."""
        name = f"snapshots/{snapshot_id}{_MANIFEST_SUFFIX}"
        if not self._exists(name):
            return False
        self.storage.delete(name)
        return True

    def _ids(self, suffix: str) -> set[int]:
        ids: set[int] = set()
        for info in self.storage.list("snapshots/"):
            stem = info.name.removeprefix("snapshots/").removesuffix(suffix)
            if stem != info.name and stem.isdecimal() and info.name.endswith(suffix):
                ids.add(int(stem))
        return ids

    def _exists(self, name: str) -> bool:
        return any(info.name == name for info in self.storage.list(name))

    # --- locks and plans -----------------------------------------------------------------------

    def lock(self, kind: str, *, exclusive: bool = False) -> VaultLock:
        """Take a lease lock; ``exclusive`` (prune) refuses if another live one of that kind."""
        return VaultLock(self.storage, kind, exclusive=exclusive)

    def list_locks(self) -> list[LockInfo]:
        return read_locks(self.storage)

    def list_plans(self) -> list[tuple[str, Plan]]:
        plans: list[tuple[str, Plan]] = []
        for info in self.storage.list(PLAN_PREFIX):
            try:
                data = self.get_object(info.name)
            except FileNotFoundError:
                continue
            plans.append((info.name, msgspec.msgpack.decode(data, type=Plan)))
        return plans

    def planned_packs(self) -> frozenset[str]:
        return frozenset(p for _name, plan in self.list_plans() for p in plan.packs)

    def size(self) -> int:
        """Bytes of every object in the vault but the transient locks."""
        return sum(
            info.size for info in self.storage.list("") if not info.name.startswith(LOCK_PREFIX)
        )


def snapshot_stored(storage: Storage, snapshot_id: int) -> bool:
    """Whether the vault in ``storage`` holds a complete snapshot ``snapshot_id`` (its manifest
    object), told from the names alone: the server asks it of a remote agent's vault, whose key
    it never holds."""
    name = f"snapshots/{snapshot_id}{_MANIFEST_SUFFIX}"
    return any(info.name == name for info in storage.list(name))
