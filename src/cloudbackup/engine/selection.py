"""Which paths a backup covers: a configuration's inclusions minus its exclusions.

Paths are compared as normalized absolute byte strings, component by component, so ``/web/cache/``
is inside ``/web/`` but ``/website`` is not inside ``/web``, and a trailing ``/`` never matters.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping, Set
from typing import Literal, Protocol

import msgspec

ItemType = Literal["file", "folder"]
_ITEM_TYPES: frozenset[str] = frozenset({"file", "folder"})


class PathItem(msgspec.Struct, frozen=True):
    """One inclusion or exclusion as a configuration stores it."""

    type: ItemType
    path: str


class _HasTypeAndPath(Protocol):
    @property
    def type(self) -> str: ...

    @property
    def path(self) -> str: ...


# Configurations arrive as decoded JSON (dicts) or as typed structs; both are accepted.
SelectionItem = Mapping[str, str] | _HasTypeAndPath


def as_path_item(item: SelectionItem) -> PathItem:
    """Validate one rule: a known type and an absolute path."""
    if isinstance(item, Mapping):
        kind, path = item.get("type"), item.get("path")
    else:
        kind, path = item.type, item.path
    if kind not in _ITEM_TYPES:
        raise ValueError(f"unknown item type {kind!r}: expected 'file' or 'folder'")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"item path must be absolute: {path!r}")
    return PathItem(type="file" if kind == "file" else "folder", path=path)


def normalize(path: str | bytes) -> bytes:
    """Canonical form for comparisons: absolute bytes, no ``.``, ``..``, ``//``, trailing ``/``."""
    raw = os.fsencode(path)
    if not raw.startswith(b"/"):
        raise ValueError(f"path must be absolute: {path!r}")
    norm = posixpath.normpath(raw)
    # POSIX lets normpath keep a leading "//"; for matching it is the same directory as "/".
    return b"/" + norm.lstrip(b"/")


def is_within(path: bytes, folder: bytes) -> bool:
    """True when normalized ``path`` is ``folder`` itself or lies below it."""
    if folder == b"/":
        return True
    return path == folder or path.startswith(folder + b"/")


def in_folders(path: bytes, folders: Set[bytes]) -> bool:
    """True when normalized ``path`` is one of ``folders`` or lies below one. Walking up its
    ancestors costs one set lookup per component, whatever the number of folders."""
    current = path
    while True:
        if current in folders:
            return True
        if current == b"/" or not current:
            return False
        current = posixpath.dirname(current)


def _components(path: bytes) -> list[bytes]:
    return path.split(b"/")


class Selection:
    """Inclusions minus exclusions, answering "is this path excluded?" and "where to start?"."""

    def __init__(
        self, inclusions: Iterable[SelectionItem], exclusions: Iterable[SelectionItem] = ()
    ) -> None:
        self.inclusions: tuple[PathItem, ...] = tuple(as_path_item(i) for i in inclusions)
        self.exclusions: tuple[PathItem, ...] = tuple(as_path_item(e) for e in exclusions)
        self._excluded_folders: frozenset[bytes] = frozenset(
            normalize(e.path) for e in self.exclusions if e.type == "folder"
        )
        self._excluded_files: frozenset[bytes] = frozenset(
            normalize(e.path) for e in self.exclusions if e.type == "file"
        )

    def with_excluded_folders(self, folders: Iterable[str | bytes]) -> Selection:
        """A copy that also excludes ``folders`` (the engine uses it to keep the vault out)."""
        extra = [PathItem(type="folder", path=os.fsdecode(f)) for f in folders]
        return Selection(self.inclusions, (*self.exclusions, *extra))

    def is_excluded(self, path: str | bytes) -> bool:
        """True when a folder exclusion contains ``path`` or a file exclusion names it exactly."""
        norm = normalize(path)
        return norm in self._excluded_files or in_folders(norm, self._excluded_folders)

    def excludes_exactly(self, path: bytes) -> bool:
        """Whether a rule names this normalized path itself, ignoring its ancestors.

        A walker that never descends into excluded folders only needs this check per entry: it
        already knows no ancestor is excluded.
        """
        return path in self._excluded_files or path in self._excluded_folders

    def roots(self) -> list[bytes]:
        """Normalized inclusion paths to walk, without duplicates or paths inside another root.

        Exclusions win over inclusions, so a root inside an excluded folder is dropped too.
        """
        roots: list[bytes] = []
        # Sorting by components (not bytes: "/a-x" < "/a/b") puts a folder right before its subtree.
        for norm in sorted({normalize(i.path) for i in self.inclusions}, key=_components):
            if roots and is_within(norm, roots[-1]):
                continue
            if not self.is_excluded(norm):
                roots.append(norm)
        return roots
