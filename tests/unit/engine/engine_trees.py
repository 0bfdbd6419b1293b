"""Builders shared by the engine tests: a generated source tree and a tree description."""

from __future__ import annotations

import os
import random
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3

from cloudbackup.engine import BackupResult, Entry, Vault
from cloudbackup.engine.crypto import KDF_FLOOR

MIB = 1024 * 1024
# Not valid UTF-8 ("café" in Latin-1): must survive backup and restore byte for byte.
NON_UTF8_NAME = b"caf\xe9.txt"
# A fixed past instant, so restored mtimes cannot match by accident of "now".
MTIME_NS = 1_600_000_000_123_456_789

# The cheapest scrypt a new vault may have (crypto.KDF_FLOOR); the cost is stored per vault.
FAST_KDF = KDF_FLOOR
# Every new vault is encrypted: the password of the test vaults.
PASSWORD = "correct horse"

# run_backup bound to the test vault, with no-op callbacks unless given (see conftest).
BackupFn = Callable[..., BackupResult]


@dataclass
class Tree:
    """A generated source tree and what a backup of it must find."""

    root: Path
    files: dict[bytes, bytes] = field(default_factory=dict)  # absolute path -> content

    @property
    def root_bytes(self) -> bytes:
        return os.fsencode(self.root)

    def path(self, relative: str | bytes) -> bytes:
        return os.path.join(self.root_bytes, os.fsencode(relative))

    def inclusions(self) -> list[dict[str, str]]:
        return [{"type": "folder", "path": f"{self.root}/"}]

    @property
    def file_count(self) -> int:
        return len(self.files)

    @property
    def byte_count(self) -> int:
        return sum(len(c) for c in self.files.values())

    @property
    def unique_contents(self) -> set[bytes]:
        return set(self.files.values())

    def write(self, relative: str | bytes, content: bytes, mode: int = 0o644) -> bytes:
        path = self.path(relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
        os.chmod(path, mode)
        os.utime(path, ns=(MTIME_NS, MTIME_NS))
        self.files[path] = content
        return path


def build_tree(root: Path, *, big_size: int = 3 * MIB + 123) -> Tree:
    """Nested dirs, an empty dir, symlinks (to a file, to a dir, dangling), a non-UTF-8 name,
    a 0-byte file, a duplicate file and a multi-MiB file; fixed modes and mtimes."""
    rng = random.Random(1234)
    tree = Tree(root)
    root.mkdir(parents=True)
    tree.write("top.txt", b"hello\n")
    tree.write("nested/a/b/deep.txt", rng.randbytes(1000), mode=0o600)
    tree.write("nested/a/sibling.bin", rng.randbytes(50_000), mode=0o755)
    tree.write("nested/a/copy-of-top.txt", b"hello\n")
    tree.write("zero", b"")
    tree.write("big.bin", rng.randbytes(big_size))
    tree.write(b"nested/" + NON_UTF8_NAME, b"latin-1 name\n")
    os.mkdir(tree.path("empty"), 0o700)
    os.symlink("top.txt", tree.path("link-to-file"))
    os.symlink("nested/a", tree.path("link-to-dir"))
    os.symlink("/does/not/exist", tree.path("dangling"))
    os.chmod(tree.path("nested/a"), 0o750)
    # Directory mtimes last: creating entries inside would change them again.
    for dirpath, _dirs, _files in os.walk(tree.root_bytes, topdown=False):
        os.utime(dirpath, ns=(MTIME_NS, MTIME_NS))
    for link in ("link-to-file", "link-to-dir", "dangling"):
        os.utime(tree.path(link), ns=(MTIME_NS, MTIME_NS), follow_symlinks=False)
    return tree


def describe(root: bytes | Path) -> dict[bytes, tuple[Any, ...]]:
    """Everything a restore must reproduce, keyed by path relative to ``root``."""
    root_b = os.fsencode(root)
    found: dict[bytes, tuple[Any, ...]] = {}
    for dirpath, dirs, files in os.walk(root_b):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root_b)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("symlink", os.readlink(path), st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
            else:
                with open(path, "rb") as f:
                    digest = blake3.blake3(f.read()).hexdigest()
                found[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, digest)
    return found


def packs_in(vault_root: Path) -> set[str]:
    """Names of every pack object in a local vault directory."""
    return {p.name for p in (vault_root / "packs").glob("*/*")}


def chunk_ids(vault: Vault) -> set[bytes]:
    """Ids of every chunk the vault's index knows."""
    index = vault.load_index()
    return {cid for cid in index._chunks}


def content_ids(vault: Vault, content: bytes) -> tuple[bytes, ...]:
    """The chunk ids ``content`` gets in ``vault`` (without storing anything)."""
    cutter = vault.new_cutter()
    return tuple(vault.sealer.chunk_id(c) for c in cutter.feed(content, last=True))


def file_bytes(vault: Vault, entry: Entry) -> bytes:
    """A file entry's content, read back from the vault."""
    return b"".join(vault.read_chunk(c) for c in entry.chunks)


def tmp_leftovers(vault_root: Path) -> list[str]:
    """Half-written objects left in a local vault's temp folder (none, normally)."""
    folder = vault_root / "tmp"
    return os.listdir(folder) if folder.exists() else []
