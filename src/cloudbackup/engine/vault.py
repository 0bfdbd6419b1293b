"""A vault: a local directory of content-addressed blobs plus one manifest per snapshot.

Layout::

    objects/<first 2 hex>/<blake3 hex>   one blob per distinct file content, never rewritten
    snapshots/<n>.lock                   snapshot id n is taken (exclusive create, kept forever)
    snapshots/<n>.manifest               snapshot n is complete (msgpack, see ``snapshot``)
    tmp/                                 files being written; renamed into place when whole

Every file appears under its final name only through ``os.replace`` of a fully written, fsync'd
temp file, so readers never see a partial blob or manifest. The blob half of the vault sits behind
the small :class:`BlobStore` protocol so chunked, compressed or encrypted storage can replace it.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Final, NamedTuple, Protocol

import blake3

from cloudbackup.engine.errors import SnapshotNotFound
from cloudbackup.engine.snapshot import Manifest, decode_manifest, encode_manifest

BLOCK_SIZE: Final = 1024 * 1024
_DIGEST = re.compile(r"[0-9a-f]{64}")
_LOCK_SUFFIX: Final = ".lock"
_MANIFEST_SUFFIX: Final = ".manifest"


def new_hasher() -> blake3.blake3:
    """The content hash of the vault; threads help on the 1 MiB blocks the engine feeds it."""
    return blake3.blake3(max_threads=blake3.blake3.AUTO)


class PutResult(NamedTuple):
    """Outcome of storing one stream: its digest, its length, and whether it was new."""

    digest: str
    size: int
    stored: bool


class BlobStore(Protocol):
    """What backup and restore need from content storage."""

    def has(self, digest: str) -> bool: ...

    def put_blocks(self, blocks: Iterable[bytes]) -> PutResult: ...

    def open_blob(self, digest: str) -> BinaryIO: ...


class Vault:
    """A vault directory; creates its layout on first use. Safe for concurrent backups."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._objects = self.root / "objects"
        self._snapshots = self.root / "snapshots"
        self._tmp = self.root / "tmp"
        for folder in (self._objects, self._snapshots, self._tmp):
            folder.mkdir(parents=True, exist_ok=True)

    # --- blobs -----------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """Where the blob of ``digest`` lives; rejects anything that is not a blake3 hex digest."""
        # Digests come from manifests on disk: never let one turn into an arbitrary path.
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"not a blake3 hex digest: {digest!r}")
        return self._objects / digest[:2] / digest

    def has(self, digest: str) -> bool:
        """True when the vault already holds this content."""
        return self.blob_path(digest).exists()

    def put_file(self, source: BinaryIO, *, block_size: int = BLOCK_SIZE) -> PutResult:
        """Store everything readable from ``source``, streaming ``block_size`` bytes at a time."""
        return self.put_blocks(iter(lambda: source.read(block_size), b""))

    def put_blocks(self, blocks: Iterable[bytes]) -> PutResult:
        """Store the concatenation of ``blocks`` under the blake3 of exactly those bytes.

        An exception raised by the ``blocks`` iterator propagates unchanged and leaves nothing
        behind, which lets the caller tell a failing source from a failing vault.
        """
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="blob-")
        placed = False
        try:
            hasher = new_hasher()
            size = 0
            with os.fdopen(fd, "wb") as out:
                for block in blocks:
                    hasher.update(block)
                    out.write(block)
                    size += len(block)
                digest = hasher.hexdigest()
                final = self.blob_path(digest)
                if final.exists():
                    # Another file or a concurrent backup stored it first: skip the fsync too.
                    return PutResult(digest, size, stored=False)
                out.flush()
                os.fsync(out.fileno())
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp_name, final)
            placed = True
            return PutResult(digest, size, stored=True)
        finally:
            if not placed:
                Path(tmp_name).unlink(missing_ok=True)

    def open_blob(self, digest: str) -> BinaryIO:
        """Open a stored blob for reading; raises ``FileNotFoundError`` if it is absent."""
        return self.blob_path(digest).open("rb")

    # --- snapshots -------------------------------------------------------------------------

    def allocate(self) -> int:
        """Reserve the next snapshot id (1, 2, ...); concurrent callers always get distinct ids."""
        candidate = max(self._ids(_LOCK_SUFFIX) | self._ids(_MANIFEST_SUFFIX), default=0) + 1
        while True:
            lock = self._snapshots / f"{candidate}{_LOCK_SUFFIX}"
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                # Someone else took it between our listing and our create: try the next one.
                candidate += 1
                continue
            try:
                os.write(fd, f"{os.getpid()}\n".encode())
            finally:
                os.close(fd)
            return candidate

    def write_manifest(self, snapshot_id: int, manifest: Manifest) -> int:
        """Durably publish a snapshot and return the manifest's size in bytes.

        The directories holding the referenced blobs are fsync'd first (whoever stored a blob,
        this run or a concurrent one), so a snapshot that survives a crash never points at a blob
        whose name did not.
        """
        if manifest.snapshot_id != snapshot_id:
            raise ValueError(f"manifest is for snapshot {manifest.snapshot_id}, not {snapshot_id}")
        if not (self._snapshots / f"{snapshot_id}{_LOCK_SUFFIX}").exists():
            raise ValueError(f"snapshot id {snapshot_id} was not allocated")
        final = self._manifest_path(snapshot_id)
        if final.exists():
            raise FileExistsError(f"snapshot {snapshot_id} already has a manifest")
        data = encode_manifest(manifest)
        self._sync_blob_dirs(manifest)
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="manifest-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp_name, final)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        _fsync_dir(self._snapshots)
        return len(data)

    def read_manifest(self, snapshot_id: int) -> Manifest:
        """Load a complete snapshot; raises :class:`SnapshotNotFound` if there is none."""
        try:
            data = self._manifest_path(snapshot_id).read_bytes()
        except FileNotFoundError:
            raise SnapshotNotFound(snapshot_id) from None
        return decode_manifest(data)

    def list_snapshots(self) -> list[int]:
        """Ids of complete snapshots (those whose manifest exists), ascending."""
        return sorted(self._ids(_MANIFEST_SUFFIX))

    # --- internals -------------------------------------------------------------------------

    def _manifest_path(self, snapshot_id: int) -> Path:
        if snapshot_id < 1:
            raise SnapshotNotFound(snapshot_id)
        return self._snapshots / f"{snapshot_id}{_MANIFEST_SUFFIX}"

    def _ids(self, suffix: str) -> set[int]:
        ids: set[int] = set()
        for name in os.listdir(self._snapshots):
            stem = name.removesuffix(suffix)
            if stem != name and stem.isdecimal():
                ids.add(int(stem))
        return ids

    def _sync_blob_dirs(self, manifest: Manifest) -> None:
        # Blob data is fsync'd before its rename; only the renames remain. At most 257 fsyncs,
        # cheaper than tracking which shard each concurrent writer touched.
        shards = {e.digest[:2] for e in manifest.entries if e.digest is not None}
        _fsync_dir(self._objects)
        for shard in sorted(shards):
            _fsync_dir(self._objects / shard)


def _fsync_dir(folder: Path) -> None:
    """Make renames and creations inside ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
