"""Deterministic source trees for the engine benchmarks, and a revertible 1% change."""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024
# 16 letters: about 4 bits of entropy per byte, so text-like data compresses about 2:1.
_LETTERS = bytes(97 + (b & 15) for b in range(256))


def compressible(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n).translate(_LETTERS)


def content(rng: random.Random, n: int) -> bytes:
    """Half of the files text-like, half random (incompressible)."""
    return compressible(rng, n) if rng.random() < 0.5 else rng.randbytes(n)


@dataclass
class Tree:
    root: Path
    files: int
    bytes: int
    paths: list[Path] = field(default_factory=list)


def mixed_tree(root: Path, size_mb: int = 500, seed: int = 42) -> Tree:
    """~30% of the bytes in small files (1-32 KiB, 100 folders), the rest in 8-64 MiB files,
    alternating text-like and random."""
    rng = random.Random(seed)
    total = size_mb * MIB
    tree = Tree(root, 0, 0)
    while tree.bytes < total * 0.3:
        n = rng.randint(1024, 32 * 1024)
        _write(
            tree,
            root / "small" / f"d{tree.files % 100:03d}" / f"f{tree.files:06d}.dat",
            content(rng, n),
        )
    big = 0
    while tree.bytes < total:
        n = min(rng.randint(8, 64) * MIB, total - tree.bytes)
        data = compressible(rng, n) if big % 2 == 0 else rng.randbytes(n)
        _write(tree, root / "large" / f"big{big:03d}.bin", data)
        big += 1
    return tree


def small_files_tree(root: Path, files: int = 200_000, size_mb: int = 512, seed: int = 43) -> Tree:
    """``files`` files of about ``size_mb / files`` bytes each (±50%), 500 per folder."""
    rng = random.Random(seed)
    mean = size_mb * MIB // files
    tree = Tree(root, 0, 0)
    # One random pool sliced per file: generating 200,000 buffers one by one is slow.
    pool = rng.randbytes(8 * MIB)
    text = compressible(rng, 8 * MIB)
    for i in range(files):
        n = rng.randint(mean // 2, mean + mean // 2)
        source = text if i % 2 == 0 else pool
        start = rng.randrange(0, len(source) - n)
        # A per-file prefix keeps every file distinct (no whole-file dedup between them).
        _write(
            tree,
            root / f"d{i // 500:04d}" / f"f{i:06d}.dat",
            i.to_bytes(8, "little") + source[start : start + n - 8],
        )
    return tree


def _write(tree: Tree, path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except FileNotFoundError:
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
    tree.files += 1
    tree.bytes += len(data)
    tree.paths.append(path)


class OnePercentChange:
    """Rewrites 1% of the files (the middle MiB of big ones, all of small ones) and can put the
    original bytes back, so every repetition starts from the same content."""

    def __init__(self, tree: Tree, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.chosen = sorted(rng.sample(tree.paths, max(1, len(tree.paths) // 100)))
        self.seed = seed
        self.saved: list[tuple[Path, int, bytes]] = []

    def apply(self) -> int:
        """Bytes rewritten."""
        rng = random.Random(self.seed)
        self.saved = []
        written = 0
        for path in self.chosen:
            size = path.stat().st_size
            offset, n = (size // 2, MIB) if size > 4 * MIB else (0, size)
            with path.open("r+b") as f:
                f.seek(offset)
                self.saved.append((path, offset, f.read(n)))
                f.seek(offset)
                f.write(content(rng, n))
            written += n
        return written

    def revert(self) -> None:
        for path, offset, data in self.saved:
            with path.open("r+b") as f:
                f.seek(offset)
                f.write(data)
        self.saved = []


def dir_size(path: Path) -> int:
    """Bytes of the regular files below ``path`` (what the vault occupies)."""
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total
