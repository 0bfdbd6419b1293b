"""What a snapshot records: every backed-up entry, and the chunks holding each file's content.

Encoding: msgpack via msgspec. Msgpack was chosen over JSON because it has a native byte-string
type, so a path is stored as the exact bytes the filesystem returned (non-UTF-8 names included)
without base64 or surrogate tricks. :class:`Entry` is encoded as an array (``array_like``) to keep
per-entry field names out of large snapshots; new fields may only be appended with a default.

A snapshot is stored in two parts. Its entry list (the *tree*) is a stream of frames (4-byte
little-endian length, then a msgpack array of at most ``FRAME_ENTRIES`` entries) that is chunked
and packed like file content, so it streams in bounded memory and unchanged stretches deduplicate
between snapshots. The small :class:`SnapshotInfo` object names the tree's chunks and is written
last: if it exists, the snapshot is whole.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Final, Literal

import msgspec

from cloudbackup.engine.errors import FileError
from cloudbackup.engine.selection import PathItem

FORMAT_VERSION: Final = 2
FRAME_ENTRIES: Final = 512
_LEN = struct.Struct("<I")

Kind = Literal["file", "dir", "symlink"]


class Entry(msgspec.Struct, frozen=True, array_like=True):
    """One filesystem object of a snapshot (a file, a directory or a symbolic link)."""

    path: bytes  # absolute, normalized, exactly as the filesystem spelled it
    kind: Kind
    mode: int  # permission bits only (stat.S_IMODE); the kind says what the object is
    mtime_ns: int
    size: int = 0  # files: bytes stored; symlinks and directories: 0
    uid: int = 0
    gid: int = 0
    chunks: tuple[bytes, ...] = ()  # files: ids of the content's chunks, in order
    target: bytes | None = None  # symlinks: the link text, never followed
    inode: int = 0  # files: st_ino when read, for the incremental "unchanged" test


class _Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """What every form of a snapshot says about it, its entries aside."""

    format: int = FORMAT_VERSION
    snapshot_id: int
    created_ns: int
    inclusions: list[PathItem]
    exclusions: list[PathItem]
    errors: list[FileError] = msgspec.field(default_factory=list)


class Manifest(_Snapshot, frozen=True, kw_only=True):
    """A complete snapshot with all its entries in memory (small vaults, tests, browsing)."""

    entries: list[Entry]


class SnapshotInfo(_Snapshot, frozen=True, kw_only=True):
    """The stored snapshot object: everything but the entries, plus where the entries are."""

    tree: list[bytes] = msgspec.field(default_factory=list)  # chunk ids of the entry stream
    entry_count: int = 0
    tree_size: int = 0  # bytes of the entry stream
    files: int = 0  # regular files in the snapshot, and their bytes
    file_bytes: int = 0


_encoder = msgspec.msgpack.Encoder()
_info_decoder = msgspec.msgpack.Decoder(SnapshotInfo)
_frame_decoder = msgspec.msgpack.Decoder(list[Entry])


def encode_info(info: SnapshotInfo) -> bytes:
    return _encoder.encode(info)


def decode_info(data: bytes) -> SnapshotInfo:
    """Parse a snapshot object; ``msgspec.ValidationError`` on a foreign format."""
    info = _info_decoder.decode(data)
    if info.format != FORMAT_VERSION:
        raise msgspec.ValidationError(f"unsupported snapshot format {info.format}")
    return info


def encode_frames(entries: Iterable[Entry]) -> Iterator[bytes]:
    """The entry stream, one frame of up to ``FRAME_ENTRIES`` entries at a time."""
    batch: list[Entry] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) >= FRAME_ENTRIES:
            yield _frame(batch)
            batch = []
    if batch:
        yield _frame(batch)


def _frame(batch: list[Entry]) -> bytes:
    body = _encoder.encode(batch)
    return _LEN.pack(len(body)) + body


def decode_frames(pieces: Iterable[bytes]) -> Iterator[Entry]:
    """Entries back from the stream's bytes, however the stream was cut into pieces."""
    buf = bytearray()
    pos = 0
    for piece in pieces:
        if pos:
            del buf[:pos]
            pos = 0
        buf += piece
        while len(buf) - pos >= _LEN.size:
            (size,) = _LEN.unpack_from(buf, pos)
            end = pos + _LEN.size + size
            if end > len(buf):
                break
            yield from _frame_decoder.decode(bytes(buf[pos + _LEN.size : end]))
            pos = end
    if len(buf) != pos:
        raise msgspec.DecodeError("truncated entry stream")
