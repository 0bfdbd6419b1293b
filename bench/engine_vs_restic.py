"""Benchmark: our vault engine against restic (and borg) on the same generated tree.

Not a test. Generates a deterministic dataset (~1 GB by default: tens of thousands of small files
plus large files, part compressible, part random) in a temp dir, installs restic and borgbackup
with apt-get when missing, then measures for each tool, one after the other on the same data:

1. the first full backup, 2. an incremental backup after changing 1% of the files,
3. a full restore, 4. the vault (repository) size on disk, 5. the peak RSS of each step.

Every tool runs as a child process (ours too: ``python bench/engine_vs_restic.py _ours ...``)
under GNU time, so wall time and peak RSS are comparable. Steps run tool after tool (first
backup of each, then each incremental, then each restore), so a change in the machine's load
hits all tools alike. Both encrypt (restic always does; our
vault gets a password too) and both compress (restic's default ``auto``; borg uses lz4).

    .venv/bin/python bench/engine_vs_restic.py              # ~1 GB, 2 runs, prints the tables
    .venv/bin/python bench/engine_vs_restic.py --size-mb 200 --no-borg --runs 1
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PASSWORD = "bench-password"
ALPHABET = bytes(range(97, 97 + 16))  # 16 letters: ~4 bits per byte, compresses about 2:1
TARGETS = {"first": 0.75, "incremental": 1.0, "restore": 1.0, "size": 1.05, "rss": 2.0}


# --- the dataset --------------------------------------------------------------------------------


def _compressible(rng: random.Random, n: int) -> bytes:
    # Random bytes mapped onto 16 letters, with runs of repeated lines: text-like entropy.
    raw = rng.randbytes(n)
    table = bytes(ALPHABET[b & 15] for b in range(256))
    return raw.translate(table)


def _content(rng: random.Random, n: int) -> bytes:
    return _compressible(rng, n) if rng.random() < 0.5 else rng.randbytes(n)


def generate(root: Path, size_mb: int, seed: int = 42) -> tuple[int, int]:
    """Write the dataset; returns (files, bytes)."""
    rng = random.Random(seed)
    total = size_mb * 1024 * 1024
    small_budget = int(total * 0.3)
    files = 0
    written = 0
    # Small files: 1-16 KiB, in 200 directories.
    while written < small_budget:
        n = rng.randint(1024, 16 * 1024)
        folder = root / "small" / f"d{files % 200:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{files:06d}.dat").write_bytes(_content(rng, n))
        files += 1
        written += n
    # Large files: 8-64 MiB, alternating compressible and random.
    big = 0
    while written < total:
        n = min(rng.randint(8, 64) * 1024 * 1024, total - written)
        folder = root / "large"
        folder.mkdir(parents=True, exist_ok=True)
        data = _compressible(rng, n) if big % 2 == 0 else rng.randbytes(n)
        (folder / f"big{big:03d}.bin").write_bytes(data)
        big += 1
        files += 1
        written += n
    return files, written


def change_one_percent(root: Path, seed: int = 7) -> int:
    """Rewrite 1% of the files (a middle MiB of large ones, all of small ones)."""
    rng = random.Random(seed)
    paths = sorted(p for p in root.rglob("*") if p.is_file())
    chosen = rng.sample(paths, max(1, len(paths) // 100))
    for path in chosen:
        size = path.stat().st_size
        if size > 4 * 1024 * 1024:
            with path.open("r+b") as f:
                f.seek(size // 2)
                f.write(rng.randbytes(1024 * 1024))
        else:
            path.write_bytes(_content(rng, size))
    return len(chosen)


# --- running and measuring ----------------------------------------------------------------------


@dataclass
class Step:
    seconds: float
    peak_rss_mb: float


def measure(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Step:
    """Run a command to completion; its wall time and peak RSS.

    The RSS comes from GNU time (``%M``), not from our own ``wait4``: Linux charges a child the
    high-water RSS of the image it replaced at exec, which for a child of this Python process is
    this process's ~100 MB, whatever the command uses.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        started = time.monotonic()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd],
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        elapsed = time.monotonic() - started
        if proc.returncode not in (0, 3):  # restic: 3 = some files unreadable
            raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-2000:]!r}")
        peak_kb = int(rss.read().strip().splitlines()[-1])
    return Step(elapsed, peak_kb / 1024)


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def drop_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class ToolResult:
    name: str
    steps: dict[str, Step] = field(default_factory=dict)
    size: int = 0


class Tool:
    """One tool's commands; each step runs as a child process."""

    name = ""

    def __init__(self, work: Path, data: Path) -> None:
        self.work = work
        self.data = data
        self.result = ToolResult(self.name)

    def repo(self) -> Path:
        raise NotImplementedError

    def init(self) -> None: ...

    def backup_cmd(self, label: str) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def restore_cmd(self, target: Path) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def step(self, key: str) -> None:
        if key in ("first", "incremental"):
            cmd, env = self.backup_cmd(key)
            self.result.steps[key] = measure(cmd, env)
            if key == "first":
                self.result.size = dir_size(self.repo())
        else:
            # Kept until the end: deleting 37k files right before another tool's restore would
            # slow that one down (ext4 scans recently freed inodes when it allocates new ones).
            target = self.work / f"{self.name}-restore"
            target.mkdir()
            cmd, env = self.restore_cmd(target)
            self.result.steps[key] = measure(cmd, env, cwd=target)


class Ours(Tool):
    name = "ours"

    def repo(self) -> Path:
        return self.work / "ours-vault"

    def backup_cmd(self, label: str) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, __file__, "_ours", "backup", str(self.repo()), str(self.data)], {}

    def restore_cmd(self, target: Path) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, __file__, "_ours", "restore", str(self.repo()), str(target)], {}


class Restic(Tool):
    name = "restic"

    def repo(self) -> Path:
        return self.work / "restic-repo"

    def env(self) -> dict[str, str]:
        return {
            "RESTIC_REPOSITORY": str(self.repo()),
            "RESTIC_PASSWORD": PASSWORD,
            "RESTIC_CACHE_DIR": str(self.work / "restic-cache"),
        }

    def init(self) -> None:
        measure(["restic", "init", "--quiet"], self.env())

    def backup_cmd(self, label: str) -> tuple[list[str], dict[str, str]]:
        return ["restic", "backup", "--quiet", str(self.data)], self.env()

    def restore_cmd(self, target: Path) -> tuple[list[str], dict[str, str]]:
        return ["restic", "restore", "latest", "--quiet", "--target", str(target)], self.env()


class Borg(Tool):
    name = "borg"

    def repo(self) -> Path:
        return self.work / "borg-repo"

    def env(self) -> dict[str, str]:
        return {
            "BORG_PASSPHRASE": PASSWORD,
            "BORG_BASE_DIR": str(self.work / "borg-base"),
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
        }

    def init(self) -> None:
        measure(["borg", "init", "--encryption", "repokey", str(self.repo())], self.env())

    def backup_cmd(self, label: str) -> tuple[list[str], dict[str, str]]:
        archive = f"{self.repo()}::{label}"
        return ["borg", "create", "--compression", "lz4", archive, str(self.data)], self.env()

    def restore_cmd(self, target: Path) -> tuple[list[str], dict[str, str]]:
        return ["borg", "extract", f"{self.repo()}::incremental"], self.env()


def ensure_installed(tools: list[str]) -> list[str]:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        packages = {"restic": "restic", "borg": "borgbackup"}
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *(packages[t] for t in missing)],
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    return [t for t in tools if shutil.which(t) is not None]


# --- our side, run as a child process -----------------------------------------------------------


def ours(argv: list[str]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from cloudbackup.engine import Vault, restore_snapshot, run_backup

    action, vault_dir = argv[0], Path(argv[1])
    vault = Vault(vault_dir, password=PASSWORD)
    if action == "backup":
        result = run_backup(
            vault,
            [{"type": "folder", "path": argv[2]}],
            [],
            on_progress=lambda p: None,
            should_stop=lambda: False,
        )
        print(result.files_backed_up, result.bytes_backed_up, file=sys.stderr)
    else:
        latest = vault.list_snapshots()[-1]
        restored = restore_snapshot(vault, latest, Path(argv[2]))
        if restored.errors:
            raise SystemExit(f"restore errors: {restored.errors[:3]}")


# --- main ---------------------------------------------------------------------------------------


def table(results: list[ToolResult], data_bytes: int) -> str:
    by = {r.name: r for r in results}
    names = [r.name for r in results]
    lines = [
        f"dataset: {data_bytes / 1e9:.2f} GB",
        f"{'':24}" + "".join(f"{n:>12}" for n in names) + f"{'ours/restic':>14}{'target':>9}",
    ]

    def row(label: str, key: str, values: dict[str, float], fmt: str) -> None:
        ratio = values["ours"] / values["restic"] if values.get("restic") else float("nan")
        ok = "ok" if ratio <= TARGETS[key] else "MISSED"
        lines.append(
            f"{label:24}"
            + "".join(f"{format(values[n], fmt):>12}" for n in names)
            + f"{ratio:>14.2f}{'<= ' + str(TARGETS[key]):>9} {ok}"
        )

    for key, label in (
        ("first", "first backup (s)"),
        ("incremental", "incremental 1% (s)"),
        ("restore", "full restore (s)"),
    ):
        row(label, key, {n: by[n].steps[key].seconds for n in names}, ".2f")
    row("vault size (MB)", "size", {n: by[n].size / 1e6 for n in names}, ".1f")
    row(
        "peak RSS (MB)",
        "rss",
        {n: max(s.peak_rss_mb for s in by[n].steps.values()) for n in names},
        ".0f",
    )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_ours":
        ours(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--no-borg", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    parser.add_argument(
        "--runs", type=int, default=2, help="repetitions; every other one runs the tools in reverse"
    )
    args = parser.parse_args()
    tools = ensure_installed(["restic"] + ([] if args.no_borg else ["borg"]))
    if "restic" not in tools:
        raise SystemExit("restic is not installed and apt-get could not install it")
    classes = [Ours, Restic] + ([Borg] if "borg" in tools else [])
    # Nothing is deleted until every run is over: removing tens of thousands of files makes the
    # next file creations slow for minutes (ext4 scans recently freed inodes when allocating),
    # which would penalise whichever tool restores next.
    works: list[Path] = []
    try:
        for run in range(args.runs):
            work = Path(tempfile.mkdtemp(prefix="engine-bench-", dir=args.workdir))
            works.append(work)
            one_run(work, classes, args.size_mb, reverse=run % 2 == 1, label=f"run {run + 1}")
    finally:
        for work in works:
            shutil.rmtree(work, ignore_errors=True)


def one_run(
    work: Path, classes: list[type[Tool]], size_mb: int, *, reverse: bool, label: str
) -> None:
    runs: list[Tool] = []
    for cls in classes:
        # Each tool backs up its own copy of the same deterministic dataset.
        data = work / f"data-{cls.name}"
        files, nbytes = generate(data, size_mb)
        tool = cls(work, data)
        tool.init()
        runs.append(tool)
    order = list(reversed(runs)) if reverse else runs
    print(
        f"{label}: {files} files, {nbytes / 1e9:.2f} GB per tool; order "
        + ", ".join(t.name for t in order),
        file=sys.stderr,
    )
    # Step by step, tools in turn: a change in the machine's load hits every tool alike.
    for key in ("first", "incremental", "restore"):
        if key == "incremental":
            for tool in runs:
                change_one_percent(tool.data)
        for tool in order:
            tool.step(key)
            print(f"{tool.name} {key}: {tool.result.steps[key]}", file=sys.stderr)
    print(f"== {label} (order: {', '.join(t.name for t in order)})")
    print(table([t.result for t in runs], nbytes), flush=True)


if __name__ == "__main__":
    main()
