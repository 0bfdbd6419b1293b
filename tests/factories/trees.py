"""Generated file trees to back up, with the counters a correct backup must report."""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Tree:
    root: Path
    files: int  # regular files a backup of `root` minus `cache/` must count
    bytes: int
    unique_files: int  # distinct contents among them: what a first backup newly stores
    unique_bytes: int


def make_tree(
    root: Path,
    *,
    files: int = 40,
    size: int = 4096,
    big_files: int = 0,
    big_size: int = 0,
    seed: int = 7,
    with_excluded: bool = True,
) -> Tree:
    """Nested folders of pseudo-random files (plus an `cache/` folder meant to be excluded)."""
    rng = random.Random(seed)
    total_files = total_bytes = 0
    contents: dict[str, int] = {}
    for i in range(files):
        folder = root / f"d{i % 5}" / f"sub{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(rng.randint(0, size))
        (folder / f"file{i}.bin").write_bytes(data)
        contents[hashlib.sha256(data).hexdigest()] = len(data)
        total_files += 1
        total_bytes += len(data)
    for i in range(big_files):
        data = rng.randbytes(big_size)
        (root / f"big{i}.bin").write_bytes(data)
        contents[hashlib.sha256(data).hexdigest()] = len(data)
        total_files += 1
        total_bytes += len(data)
    (root / "empty").mkdir(exist_ok=True)
    os.symlink("d0", root / "link-to-d0")
    if with_excluded:
        cache = root / "cache"
        cache.mkdir()
        for i in range(5):
            (cache / f"junk{i}").write_bytes(rng.randbytes(1000))
    return Tree(root, total_files, total_bytes, len(contents), sum(contents.values()))


def digests(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every regular file below ``root``; links by their target."""
    result: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            result[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            result[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            result[rel] = "dir"
    return result


WORDS = [
    "backup",
    "vault",
    "snapshot",
    "restore",
    "agent",
    "configuration",
    "schedule",
    "retention",
    "invoice",
    "report",
    "customer",
    "order",
    "shipment",
    "payment",
    "account",
    "ledger",
    "balance",
    "quarter",
    "budget",
    "forecast",
    "meeting",
]


def make_text_tree(root: Path, *, files: int = 100, size: int = 8000, seed: int = 11) -> list[Path]:
    """``files`` text files of about ``size`` bytes (documents: they compress well); the paths."""
    rng = random.Random(seed)
    paths = []
    for i in range(files):
        folder = root / f"docs{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        words: list[str] = []
        length = 0
        while length < size:
            word = rng.choice(WORDS) if rng.random() > 0.1 else str(rng.randint(0, 99_999))
            words.append(word)
            length += len(word) + 1
        path = folder / f"note{i}.txt"
        path.write_text(" ".join(words))
        paths.append(path)
    return paths


def rewrite_random(paths: list[Path], *, seed: int = 13) -> None:
    """Overwrite each file with random bytes of its size (what encrypting it in place leaves)."""
    rng = random.Random(seed)
    for path in paths:
        path.write_bytes(rng.randbytes(path.stat().st_size))
