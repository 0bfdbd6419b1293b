"""A vault: chunks packed into pack objects, an index, and one snapshot object per snapshot.

Layout (object names in a :class:`~cloudbackup.engine.storage.Storage`)::

    config                   format, chunker bounds, compression, encryption (wrapped master key)
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
decrypted, decompressed and re-hashed before use: damage is detected, never returned.
"""

from __future__ import annotations

import os
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final, NamedTuple

import blake3
import msgspec
import zstandard

from cloudbackup.engine.chunking import ChunkerParams, Cutter, new_chunker
from cloudbackup.engine.crypto import (
    AesSealer,
    DecryptError,
    KdfParams,
    PlainSealer,
    Sealer,
    derive_key,
    new_master_key,
    unwrap_master_key,
    wrap_master_key,
)
from cloudbackup.engine.errors import (
    NotEncrypted,
    PasswordRequired,
    SnapshotNotFound,
    VaultError,
    VaultLocked,
    WrongPassword,
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

VAULT_FORMAT: Final = 2
#: Read size for source files and the unit of progress reports.
BLOCK_SIZE: Final = 1024 * 1024
#: A pack is closed once it holds this many bytes (restic's default too).
PACK_TARGET: Final = 16 * 1024 * 1024
#: A backup writes an index object after this many packs (and at its end).
INDEX_EVERY_PACKS: Final = 64
#: A lock not refreshed for this long belongs to a dead process.
LOCK_STALE_SECONDS: Final = 30 * 60
LOCK_REFRESH_SECONDS: Final = 60.0
CONFIG: Final = "config"
_LOCK_SUFFIX: Final = ".lock"
_MANIFEST_SUFFIX: Final = ".manifest"
_LEN = struct.Struct("<I")
_encoder = msgspec.msgpack.Encoder()


class EncryptionConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How the master key is wrapped; the password itself is never stored."""

    cipher: str = "aes-256-gcm"
    kdf: str = "scrypt"
    kdf_params: KdfParams
    salt: bytes
    wrapped_key: bytes


class VaultConfig(msgspec.Struct, frozen=True, kw_only=True):
    format: int = VAULT_FORMAT
    id: str
    created_ns: int
    chunker: ChunkerParams
    compression_level: int = 1
    encryption: EncryptionConfig | None = None


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

    format: int = VAULT_FORMAT
    writer: str | None = None
    packs: list[IndexPack]


class LockInfo(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    id: str
    created_ns: int
    refreshed_ns: int
    host: str = ""
    pid: int = 0

    @property
    def stale(self) -> bool:
        return time.time_ns() - self.refreshed_ns > LOCK_STALE_SECONDS * 1_000_000_000


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """Packs a prune condemned; backups starting after it exists never reuse their chunks."""

    id: str
    created_ns: int
    packs: list[str]


class Location(NamedTuple):
    pack: str
    offset: int
    length: int
    compressed: bool


class ChunkError(Exception):
    """A chunk could not be read back intact; ``kind`` is ``missing`` or ``corrupt``."""

    def __init__(self, chunk_id: bytes, kind: str, detail: str) -> None:
        super().__init__(f"chunk {chunk_id.hex()} is {kind}: {detail}")
        self.chunk_id = chunk_id
        self.kind = kind


def pack_name(pack_id: str) -> str:
    return f"packs/{pack_id[:2]}/{pack_id}"


class Index:
    """Chunk id → location, compact: one int per chunk (about 160 bytes per entry in all)."""

    def __init__(self) -> None:
        self.packs: list[str] = []
        self._pack_no: dict[str, int] = {}
        self._chunks: dict[bytes, int] = {}
        self._lock = threading.Lock()  # writers of data and of metadata add concurrently

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
                    packed = (no << 65) | (b.offset << 33) | (b.length << 1) | int(b.compressed)
                    chunks[b.id] = packed

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._chunks

    def __len__(self) -> int:
        return len(self._chunks)

    def get(self, chunk_id: bytes) -> Location | None:
        packed = self._chunks.get(chunk_id)
        if packed is None:
            return None
        return Location(
            self.packs[packed >> 65],
            (packed >> 33) & 0xFFFFFFFF,
            (packed >> 1) & 0xFFFFFFFF,
            bool(packed & 1),
        )


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

    ``root`` is a local directory or any :class:`Storage`. An encrypted vault needs its
    ``password``; a new vault is encrypted when ``encrypt`` is true or, by default, when a
    password is given. ``kdf`` and ``compression_level`` only apply when the vault is created.
    """

    def __init__(
        self,
        root: Path | str | Storage,
        *,
        password: str | None = None,
        create: bool = True,
        encrypt: bool | None = None,
        kdf: KdfParams | None = None,
        compression_level: int = 1,
        chunker: ChunkerParams | None = None,
    ) -> None:
        self.storage: Storage = LocalStorage(root) if isinstance(root, str | os.PathLike) else root
        # For local vaults: the folder, so a backup never includes the vault in itself.
        self.root: Path = self.storage.local_root or Path("/nonexistent-remote-vault")
        self.config = self._load_config(
            password, create, encrypt, kdf or KdfParams(), compression_level, chunker
        )
        self._index: Index | None = None
        self._index_lock = threading.Lock()

    # --- config and keys ---------------------------------------------------------------------

    def _load_config(
        self,
        password: str | None,
        create: bool,
        encrypt: bool | None,
        kdf: KdfParams,
        level: int,
        chunker: ChunkerParams | None,
    ) -> VaultConfig:
        try:
            config = msgspec.msgpack.decode(self.storage.get(CONFIG), type=VaultConfig)
        except FileNotFoundError:
            if not create:
                raise VaultError(f"no vault at {self.storage.describe()}") from None
            if next(iter(self.storage.list("snapshots/")), None) is not None:
                raise VaultError(
                    f"{self.storage.describe()} holds a vault of an older format; "
                    "back up into a new vault"
                ) from None
            wants_encryption = password is not None if encrypt is None else encrypt
            if wants_encryption and not password:
                raise PasswordRequired(
                    "a password is needed to create an encrypted vault"
                ) from None
            config, master = _new_config(password if wants_encryption else None, kdf, level)
            if chunker is not None:
                config = msgspec.structs.replace(config, chunker=chunker)
            if not self.storage.create(CONFIG, _encoder.encode(config)):
                # Another process created it first: use theirs.
                return self._load_config(password, False, encrypt, kdf, level, chunker)
            self._set_keys(master)
            return config
        except msgspec.DecodeError as exc:
            raise VaultError(f"the vault config is not readable: {exc}") from exc
        if config.format != VAULT_FORMAT:
            raise VaultError(f"unsupported vault format {config.format}")
        if config.encryption is None:
            if password is not None or encrypt:
                raise NotEncrypted("this vault is not encrypted; it takes no password")
            self._set_keys(None)
        else:
            if not password:
                raise PasswordRequired("this vault is encrypted: a password is required")
            self._set_keys(_unwrap(config.encryption, password))
        return config

    def _set_keys(self, master: bytes | None) -> None:
        self.sealer: Sealer = PlainSealer() if master is None else AesSealer(master)
        # A secret gear seed per encrypted vault: chunk boundaries then reveal nothing either.
        self.chunker_seed = (
            0
            if master is None
            else int.from_bytes(
                blake3.blake3(master, derive_key_context="cloudbackup chunker seed").digest()[:8],
                "little",
            )
            # pyfastcdc shifts the seed left by one within 64 bits: keep it below 2**62.
            & (2**62 - 1)
        )

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

    def change_password(self, old: str, new: str) -> None:
        """Re-wrap the master key under ``new``; no data is rewritten."""
        enc = self.config.encryption
        if enc is None:
            raise NotEncrypted("this vault is not encrypted; it has no password to change")
        if not new:
            raise VaultError("the new password may not be empty")
        master = _unwrap(enc, old)
        salt = os.urandom(16)
        kek = derive_key(new, salt, enc.kdf_params)
        rewrapped = msgspec.structs.replace(
            enc, salt=salt, wrapped_key=wrap_master_key(master, kek)
        )
        self.config = msgspec.structs.replace(self.config, encryption=rewrapped)
        self.storage.put(CONFIG, _encoder.encode(self.config))

    def new_cutter(self) -> Cutter:
        return Cutter(new_chunker(self.config.chunker, self.chunker_seed))

    # --- sealed objects ------------------------------------------------------------------------

    def put_object(self, name: str, data: bytes, *, compress: bool = True) -> int:
        """Compress, seal and write a metadata object; returns its stored size."""
        if compress:
            data = _codec.compressor(3).compress(data)
        sealed = self.sealer.seal(data)
        self.storage.put(name, sealed)
        return len(sealed)

    def get_object(self, name: str, *, compressed: bool = True) -> bytes:
        raw = self.storage.get(name)
        try:
            data = self.sealer.open(raw)
            return _codec.decompressor.decompress(data) if compressed else data
        except (DecryptError, zstandard.ZstdError) as exc:
            raise VaultError(f"object {name} is damaged: {exc}") from exc

    # --- chunks --------------------------------------------------------------------------------

    def encode_chunk(self, data: bytes) -> tuple[bytes, bool]:
        """The stored form of a chunk: zstd when that is smaller, then sealed."""
        compressed = False
        level = self.config.compression_level
        if level > 0 and len(data) > 64:
            packed = _codec.compressor(level).compress(data)
            if len(packed) < len(data):
                data, compressed = packed, True
        return self.sealer.seal(data), compressed

    def decode_chunk(self, chunk_id: bytes, stored: bytes, compressed: bool) -> bytes:
        """The plaintext of a stored chunk, checked against its id; raises ``ChunkError``."""
        try:
            data = self.sealer.open(stored)
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
        for info in self.storage.list("index/"):
            try:
                data = self.get_object(info.name)
            except FileNotFoundError:
                continue
            yield info.name, msgspec.msgpack.decode(data, type=IndexFile)

    def load_index(self, *, exclude: frozenset[str] = frozenset()) -> Index:
        index = Index()
        for _name, file in self.index_files():
            for pack in file.packs:
                if pack.id not in exclude:
                    index.add(pack.id, pack.blobs)
        return index

    def write_index(self, packs: list[IndexPack], writer: str | None) -> str:
        name = f"index/{secrets.token_hex(16)}"
        self.put_object(name, _encoder.encode(IndexFile(writer=writer, packs=packs)))
        return name

    def forget_cached_index(self) -> None:
        with self._index_lock:
            self._index = None

    def read_pack_header(self, data: bytes) -> list[BlobRef]:
        """The blob list a pack carries at its end (``VaultError`` if unreadable)."""
        if len(data) < _LEN.size:
            raise VaultError("pack too short")
        (size,) = _LEN.unpack_from(data, len(data) - _LEN.size)
        start = len(data) - _LEN.size - size
        if start < 0:
            raise VaultError("pack header length is out of range")
        try:
            plain = self.sealer.open(data[start : len(data) - _LEN.size])
            return msgspec.msgpack.decode(plain, type=list[BlobRef])
        except (DecryptError, msgspec.DecodeError) as exc:
            raise VaultError(f"pack header is damaged: {exc}") from exc

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
        return VaultLock(self, kind, exclusive=exclusive)

    def list_locks(self) -> list[LockInfo]:
        locks: list[LockInfo] = []
        for info in self.storage.list("locks/"):
            try:
                locks.append(msgspec.msgpack.decode(self.storage.get(info.name), type=LockInfo))
            except (FileNotFoundError, msgspec.DecodeError):
                continue  # released while listed, or half-written by a crashed process
        return locks

    def list_plans(self) -> list[tuple[str, Plan]]:
        plans: list[tuple[str, Plan]] = []
        for info in self.storage.list("plans/"):
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
            info.size for info in self.storage.list("") if not info.name.startswith("locks/")
        )


class VaultLock:
    """A lease lock object, refreshed by a background thread until released."""

    def __init__(self, vault: Vault, kind: str, *, exclusive: bool) -> None:
        self._storage = vault.storage
        now = time.time_ns()
        self.info = LockInfo(
            kind=kind,
            id=secrets.token_hex(8),
            created_ns=now,
            refreshed_ns=now,
            host=socket.gethostname(),
            pid=os.getpid(),
        )
        self.name = f"locks/{kind}-{self.info.id}"
        self._exclusive_name = f"locks/{kind}" if exclusive else None
        if self._exclusive_name is not None:
            self._take_exclusive(vault)
        self._storage.put(self.name, _encoder.encode(self.info))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name=f"lock-{kind}", daemon=True)
        self._thread.start()

    def _take_exclusive(self, vault: Vault) -> None:
        assert self._exclusive_name is not None
        for _ in range(2):
            if self._storage.create(self._exclusive_name, _encoder.encode(self.info)):
                return
            try:
                holder = msgspec.msgpack.decode(
                    self._storage.get(self._exclusive_name), type=LockInfo
                )
            except FileNotFoundError:
                continue
            if not holder.stale:
                raise VaultLocked(
                    f"a {holder.kind} of this vault is running (pid {holder.pid} on "
                    f"{holder.host or 'unknown host'}); try again when it is done"
                )
            self._storage.delete(self._exclusive_name)  # left by a dead process
        raise VaultLocked("could not take the vault's lock; try again")

    def _refresh(self) -> None:
        while not self._stop.wait(LOCK_REFRESH_SECONDS):
            self.info = msgspec.structs.replace(self.info, refreshed_ns=time.time_ns())
            try:
                self._storage.put(self.name, _encoder.encode(self.info))
                if self._exclusive_name is not None:
                    self._storage.put(self._exclusive_name, _encoder.encode(self.info))
            except Exception:  # a store hiccup: the next refresh tries again
                continue

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._storage.delete(self.name)
        if self._exclusive_name is not None:
            self._storage.delete(self._exclusive_name)

    def __enter__(self) -> VaultLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class _PackBuilder:
    def __init__(self) -> None:
        # 16 random bytes first: two packs never share a name (their BLAKE3), even with the same
        # chunks, so a pack a prune has planned to delete is never re-created under its name.
        self.data = bytearray(os.urandom(16))
        self.blobs: list[BlobRef] = []

    def add(self, chunk_id: bytes, blob: bytes, raw_length: int, compressed: bool) -> None:
        self.blobs.append(BlobRef(chunk_id, len(self.data), len(blob), raw_length, compressed))
        self.data += blob

    def finish(self, sealer: Sealer) -> tuple[str, bytes]:
        header = sealer.seal(_encoder.encode(self.blobs))
        self.data += header
        self.data += _LEN.pack(len(header))
        data = bytes(self.data)
        self.data = bytearray()  # one copy of a 16 MiB pack in memory, not two
        return blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest(), data


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
        self.packs_written = 0

    def store(self, data: bytes) -> tuple[bytes, bool]:
        """Store one chunk unless known; returns its id and whether it was new."""
        chunk_id = self.vault.sealer.chunk_id(data)
        with self._lock:
            if chunk_id in self.view or chunk_id in self._claimed:
                return chunk_id, False
            self._claimed.add(chunk_id)
        blob, compressed = self.vault.encode_chunk(data)
        full = None
        with self._lock:
            self._pack.add(chunk_id, blob, len(data), compressed)
            if len(self._pack.data) >= PACK_TARGET:
                full, self._pack = self._pack, _PackBuilder()
        if full is not None:
            self._write_pack(full)
        return chunk_id, True

    def add_stored(self, ref: BlobRef, blob: bytes) -> bool:
        """Copy an already encoded chunk (repacking); False when the view already has it."""
        with self._lock:
            if ref.id in self.view or ref.id in self._claimed:
                return False
            self._claimed.add(ref.id)
            self._pack.add(ref.id, blob, ref.raw_length, ref.compressed)
            full = None
            if len(self._pack.data) >= PACK_TARGET:
                full, self._pack = self._pack, _PackBuilder()
        if full is not None:
            self._write_pack(full)
        return True

    def _write_pack(self, pack: _PackBuilder) -> None:
        pack_id, data = pack.finish(self.vault.sealer)
        self.vault.storage.put(pack_name(pack_id), data)
        batch: list[IndexPack] = []
        with self._lock:
            self.view.add(pack_id, pack.blobs)
            self._claimed.difference_update(b.id for b in pack.blobs)
            self._pending.append(IndexPack(pack_id, len(data), pack.blobs))
            self.packs_written += 1
            if len(self._pending) >= INDEX_EVERY_PACKS:
                batch, self._pending = self._pending, []
        if batch:
            self.vault.write_index(batch, self.writer)

    def flush(self) -> None:
        """Write the open pack and the index of every pack not yet indexed."""
        with self._lock:
            pack, self._pack = self._pack, _PackBuilder()
        if pack.blobs:
            self._write_pack(pack)
        with self._lock:
            batch, self._pending = self._pending, []
        if batch:
            self.vault.write_index(batch, self.writer)
        self.vault.forget_cached_index()


def _new_config(
    password: str | None, kdf: KdfParams, level: int
) -> tuple[VaultConfig, bytes | None]:
    encryption = None
    master = None
    if password is not None:
        master = new_master_key()
        salt = os.urandom(16)
        encryption = EncryptionConfig(
            kdf_params=kdf,
            salt=salt,
            wrapped_key=wrap_master_key(master, derive_key(password, salt, kdf)),
        )
    config = VaultConfig(
        id=secrets.token_hex(16),
        created_ns=time.time_ns(),
        chunker=ChunkerParams(),
        compression_level=level,
        encryption=encryption,
    )
    return config, master


def _unwrap(enc: EncryptionConfig, password: str) -> bytes:
    if enc.kdf != "scrypt" or enc.cipher != "aes-256-gcm":
        raise VaultError(f"unsupported vault encryption {enc.cipher} with {enc.kdf}")
    try:
        return unwrap_master_key(enc.wrapped_key, derive_key(password, enc.salt, enc.kdf_params))
    except DecryptError:
        raise WrongPassword("wrong password for this vault") from None
