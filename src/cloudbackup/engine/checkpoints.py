"""Checkpoints: what a backup that has not finished yet already stored, findable by the next try.

While a backup stores, every few seconds its packs so far are indexed and the files whose chunks
are all in indexed packs are appended to its checkpoint: ``checkpoints/<key>/<attempt>-<seq>``
objects (compressed, sealed under their name like every metadata object), each listing the
entries finished since the previous one. ``key`` is the caller's name for the run (the service
passes the backup id), so a re-driven attempt of the same run, or the next run of the same
inclusions, reads them and skips those files as it skips unchanged files of the previous
snapshot (same size, mtime and inode, every chunk still indexed). A completed backup deletes the
checkpoints it read and its own; prune keeps every chunk a checkpoint lists.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import msgspec

from cloudbackup.engine.errors import VaultError
from cloudbackup.engine.packs import ChunkWriter
from cloudbackup.engine.selection import PathItem, normalize
from cloudbackup.engine.snapshot import Entry
from cloudbackup.engine.storage import Storage
from cloudbackup.engine.vault import Vault

CHECKPOINT_PREFIX: Final = "checkpoints/"
CHECKPOINT_FORMAT: Final = 1
_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")
_encoder = msgspec.msgpack.Encoder()


class CheckpointSegment(msgspec.Struct, frozen=True, kw_only=True):
    """One checkpoint object: files finished since the previous segment of the same attempt.

    ``files_backed_up`` and ``bytes_backed_up`` are the run's totals so far, earlier attempts
    included: what had reached the vault, indexed, when the segment was written."""

    format: int = CHECKPOINT_FORMAT
    key: str
    created_ns: int
    inclusions: list[PathItem]
    files_backed_up: int
    bytes_backed_up: int
    entries: list[Entry]


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise ValueError("a checkpoint key is 1-128 letters, digits, '-' or '_'")
    return key


def rule_key(items: Iterable[object]) -> list[tuple[str, bytes]]:
    """The inclusions as a comparable value: the same selection whatever the order or spelling."""
    return sorted((getattr(i, "type", ""), normalize(getattr(i, "path", "/"))) for i in items)


def _key_of(name: str) -> str:
    return name[len(CHECKPOINT_PREFIX) :].partition("/")[0]


def list_checkpoints(vault: Vault) -> dict[str, int]:
    """Every checkpoint of the vault: its key → when its newest segment was written (ns)."""
    return checkpoint_times(vault.storage)


def checkpoint_times(storage: Storage) -> dict[str, int]:
    """:func:`list_checkpoints` from the store alone (object names and times, no password):
    what a server holding a remote agent's vault can tell."""
    newest: dict[str, int] = {}
    for info in storage.list(CHECKPOINT_PREFIX):
        key = _key_of(info.name)
        newest[key] = max(newest.get(key, 0), info.mtime_ns)
    return newest


def delete_checkpoint(vault: Vault, key: str) -> int:
    """Delete every segment of the checkpoint ``key``; how many there were."""
    names = [i.name for i in vault.storage.list(f"{CHECKPOINT_PREFIX}{check_key(key)}/")]
    for name in names:
        vault.storage.delete(name)
    return len(names)


def read_segments(vault: Vault) -> list[tuple[str, CheckpointSegment]]:
    """Every readable segment with its object name, oldest first. A damaged one is left out: a
    checkpoint only saves work, so losing one costs a re-read, never data."""
    segments = []
    for info in vault.storage.list(CHECKPOINT_PREFIX):
        try:
            segment = msgspec.msgpack.decode(vault.get_object(info.name), type=CheckpointSegment)
        except (VaultError, msgspec.DecodeError, KeyError, FileNotFoundError):
            continue
        segments.append((info.name, segment))
    segments.sort(key=lambda pair: pair[1].created_ns)
    return segments


def checkpoint_chunks(vault: Vault) -> set[bytes]:
    """Every chunk some checkpoint lists: what prune must keep beside the snapshots' chunks."""
    return {c for _, segment in read_segments(vault) for e in segment.entries for c in e.chunks}


@dataclass
class Resume:
    """What earlier tries left for a run: their finished files by path, newest first, and the
    run's own totals so far."""

    files: dict[bytes, Entry] = field(default_factory=dict)
    files_backed_up: int = 0
    bytes_backed_up: int = 0
    read: list[str] = field(default_factory=list)  # the segments' names (deleted on success)

    def find(self, path: bytes) -> Entry | None:
        return self.files.get(path)


def load_resume(vault: Vault, key: str, inclusions: Iterable[PathItem]) -> Resume:
    """The checkpoints a run ``key`` of ``inclusions`` can reuse: its own and those of other
    runs of the same inclusions (a stopped run's, say)."""
    check_key(key)
    wanted = rule_key(inclusions)
    resume = Resume()
    for name, segment in read_segments(vault):
        if rule_key(segment.inclusions) != wanted:
            continue
        resume.read.append(name)
        for entry in segment.entries:
            resume.files[entry.path] = entry  # oldest first: the newest record wins
        if segment.key == key:
            # Totals grow over a run's segments; a re-driven attempt starts from the last.
            resume.files_backed_up = max(resume.files_backed_up, segment.files_backed_up)
            resume.bytes_backed_up = max(resume.bytes_backed_up, segment.bytes_backed_up)
    return resume


class CheckpointWriter:
    """Appends one attempt's segments to the checkpoint ``key``."""

    def __init__(self, vault: Vault, key: str, inclusions: list[PathItem]) -> None:
        self.vault = vault
        self.key = check_key(key)
        self.inclusions = inclusions
        self._attempt = secrets.token_hex(6)
        self._seq = 0
        self.written: list[str] = []

    def write(self, entries: list[Entry], files_backed_up: int, bytes_backed_up: int) -> None:
        segment = CheckpointSegment(
            key=self.key,
            created_ns=time.time_ns(),
            inclusions=self.inclusions,
            files_backed_up=files_backed_up,
            bytes_backed_up=bytes_backed_up,
            entries=entries,
        )
        name = f"{CHECKPOINT_PREFIX}{self.key}/{self._attempt}-{self._seq:08d}"
        self._seq += 1
        self.vault.put_object(name, _encoder.encode(segment))
        self.written.append(name)

    def delete(self, also: Iterable[str]) -> None:
        """Delete this attempt's segments and ``also`` (the segments the run resumed from)."""
        for name in {*self.written, *also}:
            self.vault.storage.delete(name)
        delete_checkpoint(self.vault, self.key)  # an earlier attempt's, of other inclusions


#: Seconds between two checkpoints of a running backup.
CHECKPOINT_SECONDS: Final = 2.0
#: At a checkpoint the open pack is written too once it holds this much (else it waits to fill).
_MIN_OPEN_PACK: Final = 4 * 1024 * 1024


class RunCheckpoints:
    """One backup attempt's checkpointing: collects finished files, and every ``every_seconds``
    indexes the data written so far and records the files whose chunks are all indexed."""

    def __init__(
        self,
        writer: CheckpointWriter,
        data: ChunkWriter,
        resume: Resume,
        every_seconds: float = CHECKPOINT_SECONDS,
    ) -> None:
        self._writer = writer
        self._data = data
        self.resume = resume
        self._every = every_seconds
        self._waiting: list[tuple[Entry, bool]] = []  # finished files, and if they stored any
        self._last = time.monotonic()
        self._recorded_bytes = resume.bytes_backed_up
        #: Files with new chunks recorded so far, earlier attempts included.
        self.files_backed_up = resume.files_backed_up

    @property
    def bytes_backed_up(self) -> int:
        """Bytes of new chunks in indexed packs so far, earlier attempts included."""
        return self.resume.bytes_backed_up + self._data.indexed_plain_bytes

    def finished(self, entry: Entry, stored_new: bool) -> None:
        if entry.kind == "file":
            self._waiting.append((entry, stored_new))

    def due(self) -> bool:
        return time.monotonic() - self._last >= self._every

    def save(self, *, final: bool = False) -> None:
        """Index what is stored (at the end of an attempt: everything), then record the files
        whose chunks are all indexed; the others wait for the next checkpoint."""
        self._last = time.monotonic()
        self._data.index_now(min_open_bytes=1 if final else _MIN_OPEN_PACK)
        ready: list[Entry] = []
        waiting: list[tuple[Entry, bool]] = []
        for entry, stored_new in self._waiting:
            if self._data.indexed(entry.chunks):
                ready.append(entry)
                self.files_backed_up += stored_new
            else:
                waiting.append((entry, stored_new))
        self._waiting = waiting
        stored = self.bytes_backed_up
        if ready or stored != self._recorded_bytes:
            self._writer.write(ready, self.files_backed_up, stored)
            self._recorded_bytes = stored

    def completed(self) -> None:
        """The snapshot is written: its checkpoint, and those it resumed from, are done with."""
        self._writer.delete(self.resume.read)
