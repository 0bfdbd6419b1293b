"""The previous snapshot of the same inclusions: the baseline a backup compares files with, so
that an unchanged file (same size, mtime and inode) is not read again."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from cloudbackup.engine.checkpoints import rule_key
from cloudbackup.engine.errors import ChunkError
from cloudbackup.engine.index import Index
from cloudbackup.engine.selection import Selection
from cloudbackup.engine.snapshot import Entry, SnapshotInfo
from cloudbackup.engine.vault import Vault


def previous_snapshot(vault: Vault, selection: Selection) -> SnapshotInfo | None:
    """The newest snapshot of the same inclusions: the baseline for skipping unchanged files."""
    wanted = rule_key(selection.inclusions)
    for snapshot_id in reversed(vault.list_snapshots()):
        try:
            info = vault.read_info(snapshot_id)
        except Exception:  # forgotten meanwhile, or unreadable: just do not use it
            continue
        if rule_key(info.inclusions) == wanted:
            return info
    return None


def previous_entries(vault: Vault, view: Index, info: SnapshotInfo | None) -> Iterator[Entry]:
    """The previous snapshot's entries; ends early (so nothing more is skipped) if its tree is
    unreadable or sits in packs a prune has planned to delete."""
    if info is None:
        return
    try:
        for chunk_id in info.tree:
            if chunk_id not in view:
                return
        yield from vault.iter_entries(info, index=view)
    except (ChunkError, msgspec.DecodeError):
        return


def _path_key(path: bytes) -> list[bytes]:
    # Walk order (a directory, then its children by name) is the order of component lists.
    return path.split(b"/")


class PreviousCursor:
    """Merge-join cursor over the previous snapshot's entries, which are in walk order too.
    ``files`` counts the previous snapshot's files passed so far (all of them after
    :meth:`finish`).

    Lookups come in walk order, so the entry sought is nearly always the cursor's own: it is
    compared as bytes, and paths are split into components (the walk order's key) only when
    it is not (at each folder's first file, and around added or deleted files)."""

    def __init__(self, entries: Iterator[Entry]) -> None:
        self._entries = entries
        self._current: Entry | None = None
        self.files = 0
        self._advance()

    def _advance(self) -> None:
        current = self._current = next(self._entries, None)
        if current is not None and current.kind == "file":
            self.files += 1

    def finish(self) -> int:
        """Read the rest of the previous snapshot; how many files it holds."""
        while self._current is not None:
            self._advance()
        return self.files

    def find(self, path: bytes) -> Entry | None:
        """The previous entry at ``path``, if any; the cursor moves past it (each path is
        looked up once, in walk order)."""
        current = self._current
        if current is not None and current.path != path:
            key = _path_key(path)
            while current is not None and _path_key(current.path) < key:
                self._advance()
                current = self._current
        if current is not None and current.path == path:
            self._advance()
            return current
        return None
