"""What a restore selects: its inclusions minus its exclusions over a snapshot's paths (the
``select`` predicate of ``restore_snapshot``), for a hosted worker and a remote agent alike."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from cloudbackup.engine.selection import in_folders, is_within


def _norm(path: str) -> bytes:
    """A validated absolute path (no empty, '.' or '..' parts) as the bytes manifests hold."""
    raw = os.fsencode(path).rstrip(b"/")
    return raw or b"/"


class RestoreSelection:
    """A restore's inclusions minus its exclusions, over snapshot paths (component-wise, so
    ``/web`` does not select ``/website``). No inclusions select the whole snapshot."""

    def __init__(self, inclusions: Sequence[dict[str, Any]], exclusions: Sequence[dict[str, Any]]):
        self.inclusions = [(item["type"], item["path"], _norm(item["path"])) for item in inclusions]
        self._excluded_files = {_norm(e["path"]) for e in exclusions if e["type"] == "file"}
        self._excluded_folders = {_norm(e["path"]) for e in exclusions if e["type"] == "folder"}
        self.matched: set[int] = set()
        self.everything = not inclusions and not exclusions

    def is_excluded(self, path: bytes) -> bool:
        return path in self._excluded_files or in_folders(path, self._excluded_folders)

    def selects(self, path: bytes) -> bool:
        """Whether the snapshot entry at ``path`` is restored; remembers which inclusion it met."""
        if not self.inclusions:
            return not self.is_excluded(path)
        hit = False
        for index, (kind, _, norm) in enumerate(self.inclusions):
            if path == norm or (kind == "folder" and is_within(path, norm)):
                self.matched.add(index)
                hit = True
        return hit and not self.is_excluded(path)

    def unmatched(self) -> list[str]:
        """Inclusions the snapshot holds nothing for (reported as per-file errors)."""
        return [path for i, (_, path, _) in enumerate(self.inclusions) if i not in self.matched]
