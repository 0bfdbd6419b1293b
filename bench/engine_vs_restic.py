"""Benchmark: our backups and restores through the service, and the engine alone, against restic
and borg on the same generated trees (issue 12, item 3).

Not a test. Installs nothing: restic and borg come from Debian (``apt-get update && apt-get
install -y restic borgbackup``); a missing one is said and left out. Two trees are generated
deterministically in a temp folder: a mixed one (~500 MB: 30% in 1-32 KiB files, the rest in
8-64 MiB files, half text-like, half random) and one of 200,000 small files (~512 MB). For each
tree, each tool does, on a fresh vault:

1. a first backup, 2. an unchanged re-run, 3. an incremental after 1% of the files changed,
4. a full restore to a new folder; then the vault's size on disk and the peak RSS.

``service`` is ours end to end: the Procfile's ``web`` and ``worker`` lines (the README's
multi-process deployment) on the machine's PostgreSQL and Redis, one worker process, each step
timed from just before the POST (B1 / R1) to the first GET (B3 / R2) that shows a final state;
its RSS is the worker's pool process's peak (VmHWM). ``engine`` is the same engine functions
called in one Python process (timed around each call). restic and borg run as subprocesses
under GNU time. Each tree gets ``--reps`` (3) rounds in turn (service, engine, restic, borg,
service, ...); the table shows the best of them::

    .venv/bin/python bench/engine_vs_restic.py                       # the issue's sizes
    .venv/bin/python bench/engine_vs_restic.py --small-files 20000 --small-mb 51 --mixed-mb 100
    .venv/bin/python bench/engine_vs_restic.py --tools service,restic --trees small --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_report import TOOLS, render
from bench_service import Service, running_service
from bench_trees import OnePercentChange, Tree, dir_size, mixed_tree, small_files_tree

PASSWORD = "bench-password"
STEPS = ("first", "rerun", "incremental", "restore")


@dataclass
class Round:
    """One tool's four steps on one tree."""

    seconds: dict[str, float] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)
    vault_bytes: int = 0
    detail: dict[str, object] = field(default_factory=dict)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def check_restored(tree: Tree, target: Path) -> None:
    """The restored copy holds as many files and bytes as the source (wherever it nests them)."""
    files = size = 0
    for folder, _, names in os.walk(target):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(folder, name)).st_size
    if files != tree.files or size != tree.bytes:
        raise SystemExit(
            f"restore to {target}: {files} files / {size} B, want {tree.files} / {tree.bytes}"
        )


# --- restic and borg: subprocesses under GNU time -----------------------------------------------


def timed(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a command. The RSS comes from GNU time: a child of
    this Python process would be charged this process's RSS from before its exec."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        began = time.monotonic()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        seconds = time.monotonic() - began
        if done.returncode != 0:
            raise SystemExit(f"{cmd[0]} failed ({done.returncode}): {done.stderr[-2000:]!r}")
        return seconds, int(rss.read().split()[-1]) / 1024


def restic_round(work: Path, tree: Tree, change: OnePercentChange) -> Round:
    repo = work / "restic-repo"
    env = {
        "RESTIC_REPOSITORY": str(repo),
        "RESTIC_PASSWORD": PASSWORD,
        "RESTIC_CACHE_DIR": str(work / "restic-cache"),
    }
    timed(["restic", "init", "--quiet"], env)
    commands = {
        "first": ["restic", "backup", "--quiet", str(tree.root)],
        "rerun": ["restic", "backup", "--quiet", str(tree.root)],
        "incremental": ["restic", "backup", "--quiet", str(tree.root)],
        "restore": ["restic", "restore", "latest", "--target", str(work / "restored")],
    }
    return _subprocess_round(work, tree, change, repo, env, commands)


def borg_round(work: Path, tree: Tree, change: OnePercentChange) -> Round:
    repo = work / "borg-repo"
    env = {
        "BORG_PASSPHRASE": PASSWORD,
        "BORG_BASE_DIR": str(work / "borg-base"),
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
    }
    timed(["borg", "init", "--encryption", "repokey", str(repo)], env)
    commands = {
        step: ["borg", "create", "--compression", "lz4", f"{repo}::{step}", str(tree.root)]
        for step in ("first", "rerun", "incremental")
    }
    commands["restore"] = ["borg", "extract", f"{repo}::incremental"]
    return _subprocess_round(work, tree, change, repo, env, commands)


def _subprocess_round(
    work: Path,
    tree: Tree,
    change: OnePercentChange,
    repo: Path,
    env: dict[str, str],
    commands: dict[str, list[str]],
) -> Round:
    result = Round()
    target = work / "restored"
    target.mkdir()
    for step in STEPS:
        if step == "incremental":
            change.apply()
        cwd = target if step == "restore" else None
        result.seconds[step], result.rss_mb[step] = timed(commands[step], env, cwd)
    result.vault_bytes = dir_size(repo)
    check_restored(tree, target)
    return result


# --- ours -------------------------------------------------------------------------------------


def service_round(service: Service, work: Path, tree: Tree, change: OnePercentChange) -> Round:
    result = Round()
    before = set(os.listdir(service.vaults)) if service.vaults.exists() else set()
    agent, config = service.configuration_for(tree.root)
    last = None
    for step in STEPS:
        if step == "incremental":
            change.apply()
        if step == "restore":
            assert last is not None
            seen = service.restore(last.body["id"], agent, work / "restored")
        else:
            seen = last = service.backup(config)
        if seen.state != "completed":
            raise SystemExit(f"service {step}: {seen.state}: {json.dumps(seen.body)[:2000]}")
        result.seconds[step] = seen.seconds
        result.rss_mb[step] = seen.peak_rss_mb
        result.detail[step] = {
            "seen": {k: round(v, 3) for k, v in seen.seen.items()},
            "files_backed_up": seen.body.get("files_backed_up"),
            "bytes_backed_up": seen.body.get("bytes_backed_up"),
            "worker_rss_before_mb": round(service.idle_rss_mb),
            "api_cpu_seconds": round(seen.api_cpu_seconds, 2),
        }
    new = set(os.listdir(service.vaults)) - before
    result.vault_bytes = sum(dir_size(service.vaults / name) for name in new)
    check_restored(tree, work / "restored")
    return result


def engine_round(work: Path, tree: Tree, change: OnePercentChange) -> Round:
    """The engine's functions in one child process (``_engine``), driven step by step."""
    child = subprocess.Popen(
        [sys.executable, __file__, "_engine", str(work / "engine-vault"), str(tree.root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    result = Round()
    try:
        for step in STEPS:
            if step == "incremental":
                change.apply()
            argument = str(work / "restored") if step == "restore" else ""
            if step == "restore":
                (work / "restored").mkdir()
            child.stdin.write(f"{step} {argument}\n")
            child.stdin.flush()
            answer = json.loads(child.stdout.readline())
            result.seconds[step], result.rss_mb[step] = answer["seconds"], answer["rss_mb"]
    finally:
        child.stdin.close()
        child.wait()
    result.vault_bytes = dir_size(work / "engine-vault")
    check_restored(tree, work / "restored")
    return result


def engine_child(vault_dir: str, source: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from cloudbackup.engine import Vault, restore_snapshot, run_backup

    vault = Vault(Path(vault_dir), password=PASSWORD)
    status = Path("/proc/self/status")
    for line in sys.stdin:
        step, _, argument = line.strip().partition(" ")
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM: a per-step peak
        began = time.monotonic()
        if step == "restore":
            snapshot = vault.list_snapshots()[-1]
            restored = restore_snapshot(vault, snapshot, Path(argument))
            if restored.errors:
                raise SystemExit(f"restore errors: {restored.errors[:3]}")
        else:
            run_backup(
                vault,
                [{"type": "folder", "path": f"{source}/"}],
                [],
                on_progress=lambda p: None,
                should_stop=lambda: False,
            )
        seconds = time.monotonic() - began
        hwm = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM:"))
        print(json.dumps({"seconds": seconds, "rss_mb": int(hwm.split()[1]) / 1024}), flush=True)


# --- main ---------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mixed-mb", type=int, default=500)
    parser.add_argument("--small-files", type=int, default=200_000)
    parser.add_argument("--small-mb", type=int, default=512)
    parser.add_argument("--reps", type=int, default=3, help="rounds per tool and tree (best kept)")
    parser.add_argument("--trees", default="mixed,small")
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp folder")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser.parse_args()


def available_tools(wanted: list[str]) -> list[str]:
    tools = []
    for tool in wanted:
        if tool in ("restic", "borg") and shutil.which(tool) is None:
            print(
                f"{tool} is not installed: measuring the rest. Install it with "
                "`apt-get update && apt-get install -y restic borgbackup`."
            )
            continue
        tools.append(tool)
    return tools


def run_tree(
    name: str, tree: Tree, tools: list[str], reps: int, work: Path, service: Service | None
) -> dict[str, list[Round]]:
    change = OnePercentChange(tree)
    rounds: dict[str, list[Round]] = {tool: [] for tool in tools}
    for rep in range(reps):
        for tool in tools:
            place = work / f"{name}-{tool}-{rep}"
            place.mkdir()
            log(f"{name} round {rep + 1} {tool} (load {os.getloadavg()[0]:.2f})")
            try:
                if tool == "service":
                    assert service is not None
                    result = service_round(service, place, tree, change)
                elif tool == "engine":
                    result = engine_round(place, tree, change)
                elif tool == "restic":
                    result = restic_round(place, tree, change)
                else:
                    result = borg_round(place, tree, change)
            finally:
                change.revert()
            log(
                f"  {', '.join(f'{k} {v:.2f} s' for k, v in result.seconds.items())}; "
                f"vault {result.vault_bytes / 1e6:.1f} MB; rss {max(result.rss_mb.values()):.0f} MB"
            )
            rounds[tool].append(result)
            # The vaults go at once; the restored trees only after the last round: creating
            # files right after deleting many is slow on ext4 (it scans the freed inodes), which
            # would slow down whichever tool restores next.
            for item in place.iterdir():
                if item.name != "restored":
                    shutil.rmtree(item, ignore_errors=True)
    for rep in range(reps):
        for tool in tools:
            shutil.rmtree(work / f"{name}-{tool}-{rep}", ignore_errors=True)
    return rounds


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_engine":
        engine_child(sys.argv[2], sys.argv[3])
        return
    args = parse_args()
    tools = available_tools([t for t in args.tools.split(",") if t])
    work = Path(tempfile.mkdtemp(prefix="engine-bench-", dir=args.workdir))
    started = time.time()
    figures: dict[str, Any] = {
        "trees": {},
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{os.cpu_count()} cores, {os.uname().release}",
        "versions": versions(),
    }
    try:
        with running_service(work, args.pg_admin_url, args.redis_url) as service:
            for name in args.trees.split(","):
                log(f"generating the {name} tree")
                root = work / f"tree-{name}"
                if name == "mixed":
                    tree = mixed_tree(root, args.mixed_mb)
                else:
                    tree = small_files_tree(root, args.small_files, args.small_mb)
                os.sync()
                rounds = run_tree(name, tree, tools, args.reps, work, service)
                figures["trees"][name] = {
                    "files": tree.files,
                    "bytes": tree.bytes,
                    "rounds": {t: [r.__dict__ for r in rs] for t, rs in rounds.items()},
                }
                shutil.rmtree(root, ignore_errors=True)
                # Each tree's table as soon as it is done: a long run stopped later keeps it.
                report(figures, started, args.json)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(figures: dict[str, Any], started: float, path: Path | None) -> None:
    figures["minutes"] = round((time.time() - started) / 60, 1)
    figures["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(render(figures), flush=True)
    if path:
        path.write_text(json.dumps(figures, indent=1))


def versions() -> dict[str, str]:
    found = {}
    for tool, flag in (("restic", "version"), ("borg", "--version")):
        if shutil.which(tool):
            out = subprocess.run([tool, flag], capture_output=True, text=True).stdout
            found[tool] = out.split()[1] if out else "?"
    return found


if __name__ == "__main__":
    main()
