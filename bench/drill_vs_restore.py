"""Benchmark: a restore drill's throughput against a plain restore of the same backup.

Not a test. Generates a deterministic tree (small and large files, half compressible, half
random), backs it up through the service's own run (SQLite, an encrypted vault, in-process as
a worker runs it), then alternates, ``--runs`` times: a plain restore of the backup into a fresh
folder (``execute_restore``) and a drill of it (``execute_drill``: restore into scratch, read
every file back, hash it in the pieces the manifest's chunks make (their lengths from the
vault's index) and compare the ids with the manifest's, remove each file once checked, then
the emptied scratch folder). Each is timed from its claim to its final state; throughput is the
tree's bytes over that time. The restore's folder is removed outside its timing; the drill's
removal is part of the drill.

    .venv/bin/python bench/drill_vs_restore.py               # 300 MB, 2 runs
    .venv/bin/python bench/drill_vs_restore.py --size-mb 100 --runs 3

The target (issue 14) is a drill at 0.9x a plain restore's throughput or better.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from cloudbackup.domain.drill_run import execute_drill  # noqa: E402
from cloudbackup.domain.drills import DrillService  # noqa: E402
from cloudbackup.domain.restore_run import execute_restore  # noqa: E402
from cloudbackup.domain.restores import RestoreRequest, RestoreService  # noqa: E402
from cloudbackup.domain.roots import RootsPolicy  # noqa: E402
from cloudbackup.settings import load_settings  # noqa: E402
from cloudbackup.store import migrate  # noqa: E402
from cloudbackup.store.db import Database  # noqa: E402
from cloudbackup.store.tables import Drill  # noqa: E402
from factories import rows  # noqa: E402
from factories.runs import Recorder, backed_up  # noqa: E402

TARGET = 0.9
ALPHABET = bytes(range(97, 113))  # 16 letters: text-like data that compresses about 2:1


def generate(root: Path, size_mb: int, seed: int = 42) -> tuple[int, int]:
    """A third of the bytes in 4-64 KiB files, the rest in 4-32 MiB ones; (files, bytes)."""
    rng = random.Random(seed)
    table = bytes(ALPHABET[b & 15] for b in range(256))
    total, written, files = size_mb * 1024 * 1024, 0, 0
    while written < total:
        small = written < total // 3
        n = rng.randint(4, 64) * 1024 if small else rng.randint(4, 32) * 1024 * 1024
        n = min(n, total - written)
        data = rng.randbytes(n)
        if files % 2 == 0:
            data = data.translate(table)
        folder = root / ("small" if small else "large") / f"d{files % 50:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{files:06d}.dat").write_bytes(data)
        files += 1
        written += n
    return files, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="drill-bench-"))
    try:
        run(work, args.size_mb, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, size_mb: int, runs: int) -> None:
    (work / "service").mkdir()
    (work / "restores").mkdir()
    url = f"sqlite:///{work / 'service' / 'cloudbackup.db'}"
    settings = load_settings(
        {
            # The service's own folder is never a root: the tree and the restores lie beside it.
            "CLOUDBACKUP_DATA_DIR": str(work / "service"),
            "CLOUDBACKUP_DATABASE_URL": url,
            "CLOUDBACKUP_VAULT_PATH": str(work / "service" / "vault"),
            "CLOUDBACKUP_ALLOWED_ROOTS": f"{work / 'data'}:{work / 'restores'}",
        }
    )
    migrate.upgrade(url)
    db = Database(settings.resolved_database_url)
    files, size = generate(work / "data", size_mb)
    print(f"tree: {files} files, {size / 1e6:.0f} MB")
    agent = rows.agent(db)
    started = time.monotonic()
    _, _, backup = backed_up(db, settings, work / "data", agent=agent)
    print(f"backup: {time.monotonic() - started:.2f} s")

    restores: list[float] = []
    drills: list[float] = []
    for n in range(runs):
        target = work / "restores" / f"restored-{n}"
        request = RestoreRequest(backup.id, agent.id, str(target), False, None, (), ())
        service = RestoreService(db, Recorder(), roots=RootsPolicy.from_settings(settings))
        restore = service.start(agent.project_id, request)
        began = time.monotonic()
        outcome = execute_restore(db, settings, restore.id)
        restores.append(time.monotonic() - began)
        assert outcome == "completed", outcome
        shutil.rmtree(target)

        drill = DrillService(db, Recorder()).start(agent.project_id, backup.id)
        began = time.monotonic()
        outcome = execute_drill(db, settings, drill.id)
        drills.append(time.monotonic() - began)
        assert outcome == "passed", outcome
        with db.read() as session:
            row = session.execute(sa.select(Drill).where(Drill.id == drill.id)).scalar_one()
        ratio = restores[-1] / drills[-1]
        print(
            f"run {n + 1}: restore {size / restores[-1] / 1e6:7.1f} MB/s ({restores[-1]:.2f} s)"
            f"  drill {size / drills[-1] / 1e6:7.1f} MB/s ({drills[-1]:.2f} s)"
            f"  ratio {ratio:.2f}x  (the drill's own bytes_per_second:"
            f" {(row.bytes_per_second or 0) / 1e6:.1f} MB/s)"
        )
    # The median of each round's ratio: a restore and a drill next to each other see the same
    # load, while the machine's load changes between rounds.
    ratio = statistics.median(r / d for r, d in zip(restores, drills, strict=True))
    verdict = "meets" if ratio >= TARGET else "misses"
    print(
        f"median of the rounds' drill/restore throughput ratios: {ratio:.2f}x"
        f" ({verdict} the {TARGET}x target)"
    )
    db.dispose()


if __name__ == "__main__":
    main()
