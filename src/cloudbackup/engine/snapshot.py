"""The manifest of one snapshot: every backed-up entry and where its content lives.

Encoding: msgpack via msgspec. Msgpack was chosen over JSON because it has a native byte-string
type, so a path is stored as the exact bytes the filesystem returned (non-UTF-8 names included)
without base64 or surrogate tricks. :class:`Entry` is encoded as an array (``array_like``) to keep
per-entry field names out of large manifests; new fields may only be appended with a default.
The top-level :class:`Manifest` is a map carrying a ``format`` number for future migrations.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from cloudbackup.engine.errors import FileError
from cloudbackup.engine.selection import PathItem

FORMAT_VERSION: Final = 1

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
    digest: str | None = None  # files: blake3 hex of the content blob in the vault
    target: bytes | None = None  # symlinks: the link text, never followed


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    """A complete snapshot. Written to the vault last: if it exists, the snapshot is whole."""

    format: int = FORMAT_VERSION
    snapshot_id: int
    created_ns: int
    inclusions: list[PathItem]
    exclusions: list[PathItem]
    entries: list[Entry]
    errors: list[FileError] = msgspec.field(default_factory=list)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Manifest)


def encode_manifest(manifest: Manifest) -> bytes:
    """Serialize a manifest to msgpack bytes."""
    return _encoder.encode(manifest)


def decode_manifest(data: bytes) -> Manifest:
    """Parse and validate msgpack bytes; raises ``msgspec.ValidationError`` on a foreign format."""
    manifest = _decoder.decode(data)
    if manifest.format != FORMAT_VERSION:
        raise msgspec.ValidationError(f"unsupported manifest format {manifest.format}")
    return manifest
