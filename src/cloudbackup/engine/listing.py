"""One directory's children, in a snapshot or on this host: what a browse request (B5/A10)
lists, whoever answers it (a hosted worker, or a remote agent on its host)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import NamedTuple

from cloudbackup.engine.snapshot import Entry


class Child(NamedTuple):
    """One child of a listed directory: its name's bytes, ``dir``/``file``/``symlink``/``other``
    and its size (files only)."""

    name: bytes
    kind: str
    size: int


def snapshot_children(entries: Iterable[Entry], directory: bytes) -> list[Child] | None:
    """The children of ``directory`` in a snapshot, sorted by name; None when the snapshot has no
    directory there. Ancestors of the backed-up folders (``/`` of a backup of ``/home/u/``) have
    no entries of their own and are listed as directories."""
    base = directory.rstrip(b"/") or b"/"
    prefix = b"/" if base == b"/" else base + b"/"
    children: dict[bytes, Child] = {}
    exists = base == b"/"
    for entry in entries:
        path = entry.path
        if path == base:
            if entry.kind != "dir":
                return None
            exists = True
            continue
        if not path.startswith(prefix):
            continue
        exists = True
        name, _, rest = path[len(prefix) :].partition(b"/")
        if rest:
            children.setdefault(name, Child(name, "dir", 0))
        else:
            children[name] = Child(name, entry.kind, entry.size)
    if not exists:
        return None
    return [children[name] for name in sorted(children)]


def host_children(directory: bytes, limit: int) -> list[Child]:
    """The children of a directory of this host, links unfollowed, at most ``limit``.

    Raises ``OSError`` when the directory cannot be listed.
    """
    items: list[Child] = []
    with os.scandir(directory) as listing:
        for entry in listing:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished while listing
            mode = info.st_mode
            kind = (
                "dir"
                if stat.S_ISDIR(mode)
                else "symlink"
                if stat.S_ISLNK(mode)
                else "file"
                if stat.S_ISREG(mode)
                else "other"
            )
            items.append(Child(entry.name, kind, info.st_size))
            if len(items) >= limit:
                break
    return sorted(items, key=lambda child: child.name)
