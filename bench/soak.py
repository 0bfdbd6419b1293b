"""Bounded soak: POST backups at a fixed rate for a while, with a real worker pool running them,
then check that every created backup reached a final state and that the totals add up.

What runs (all private to this run, removed at the end, also on errors and Ctrl-C): a PostgreSQL
cluster and a Redis server on free loopback ports, one `cloudbackup web` process, two
`celery worker` processes (2 pool processes each) and `celery beat` (the sweeper). Each backup
copies a small generated tree; a share of the configurations includes a missing path (they end
`completed_with_errors`).

The load is open-loop: request *i* is sent at *i / rate* seconds whatever the earlier answers
took (a thread pool keeps up), so a slow server shows up as latency, not as a lower rate.
Requests rotate over many configurations, because a second manual start of a running
configuration is refused (409, counted apart: not created).

Printed: created (201), refused (409), other answers, completed, completed_with_errors, failed,
lost (created but not final after the drain timeout, or missing rows: must be 0), duplicates
(backups that ran twice: must be 0), POST latency p50/p99/max, the highest broker queue depth
seen, and how long the queue took to drain. Exit status 1 if anything was lost or duplicated.

    .venv/bin/python bench/soak.py                      # 60 s at 10 POST/s
    .venv/bin/python bench/soak.py --seconds 30 --rate 20 --json /tmp/soak.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import redis
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from cloudbackup.domain.auth import create_token  # noqa: E402
from cloudbackup.queue.names import QueueNames  # noqa: E402
from cloudbackup.settings import load_settings  # noqa: E402
from cloudbackup.store import migrate  # noqa: E402
from cloudbackup.store.db import Database  # noqa: E402
from cloudbackup.store.tables import Backup, Event  # noqa: E402
from factories import rows  # noqa: E402
from factories.private_services import (  # noqa: E402
    ApiProcess,
    BeatProcess,
    private_postgres,
    private_redis,
)
from factories.services import WorkerProcess  # noqa: E402
from factories.trees import make_tree  # noqa: E402

PROJECT = "110011"
FINAL = {"completed", "completed_with_errors", "failed", "stopped", "skipped", "missed"}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _seed(db: Database, tmp: Path, count: int) -> list[str]:
    """``count`` configurations of one small tree; every tenth also names a missing folder."""
    tree = make_tree(tmp / "src", files=8, size=8192, with_excluded=False)
    configs = []
    for i in range(count):
        agent = rows.agent(db, project_id=PROJECT)
        inclusions = [{"type": "folder", "path": f"{tree.root}/"}]
        if i % 10 == 0:
            inclusions.append({"type": "folder", "path": f"{tmp}/missing-{i}/"})
        configs.append(rows.configuration(db, agent, inclusions=inclusions).id)
    return configs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load phase")
    parser.add_argument("--rate", type=float, default=10.0, help="POSTs per second")
    parser.add_argument("--configurations", type=int, default=300)
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cb-soak-")))
        pg = stack.enter_context(private_postgres())
        broker = stack.enter_context(private_redis())
        url = pg.create_database()
        migrate.upgrade(url)
        env = {
            "CLOUDBACKUP_DATA_DIR": str(tmp / "data"),
            "CLOUDBACKUP_DATABASE_URL": url,
            "CLOUDBACKUP_BROKER_URL": broker.url,
            "CLOUDBACKUP_VAULT_PATH": str(tmp / "vault"),
            "CLOUDBACKUP_BACKUP_QUEUE": f"soak-{uuid.uuid4().hex[:8]}",
            "CLOUDBACKUP_MAX_RUNNING_PER_AGENT": "0",
            "CLOUDBACKUP_LOG_FORMAT": "console",
        }
        (tmp / "data").mkdir()
        settings = load_settings(env)
        db = Database(url)
        stack.callback(db.dispose)

        print("seeding configurations ...", flush=True)
        configs = _seed(db, tmp, args.configurations)
        with db.transaction() as session:
            secret, _ = create_token(session, PROJECT, ["admin"])

        print("starting API, 2 workers and beat ...", flush=True)
        api = ApiProcess(env, tmp / "api.log").start()
        stack.callback(api.stop)
        for name in ("w1", "w2"):
            worker = WorkerProcess(env, tmp / f"{name}.log", concurrency=2, name=name).start()
            stack.callback(worker.stop)
        beat = BeatProcess(env, tmp / "beat.log").start()
        stack.callback(beat.stop)

        queues = QueueNames(settings.backup_queue).shared()
        client = redis.Redis.from_url(broker.url)
        depth_max = 0
        sampling = threading.Event()

        def sample_depth() -> None:
            nonlocal depth_max
            while not sampling.is_set():
                depth_max = max(depth_max, sum(int(client.llen(q)) for q in queues))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample_depth, daemon=True)
        sampler.start()

        answers: list[tuple[int, float, str | None]] = []
        lock = threading.Lock()
        http = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=64))
        stack.callback(http.close)

        def post(i: int) -> None:
            body = {"configuration_id": configs[i % len(configs)], "state": "start_requested"}
            began = time.monotonic()
            response = http.post(
                f"{api.base_url}/v2/{PROJECT}/backups",
                json=body,
                headers={"X-Auth-Token": secret},
            )
            took = time.monotonic() - began
            backup_id = response.json().get("id") if response.status_code == 201 else None
            with lock:
                answers.append((response.status_code, took, backup_id))

        total = int(args.seconds * args.rate)
        print(f"load: {total} POSTs over {args.seconds:.0f} s ({args.rate:g}/s) ...", flush=True)
        started = time.monotonic()
        with ThreadPoolExecutor(32) as pool:
            for i in range(total):
                delay = started + i / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(post, i)
        load_seconds = time.monotonic() - started

        created = [backup_id for status, _, backup_id in answers if backup_id]
        print(f"draining {len(created)} backups ...", flush=True)
        deadline = time.monotonic() + args.drain_timeout
        drained_at = None
        while time.monotonic() < deadline:
            with db.transaction() as session:
                open_rows = session.execute(
                    sa.select(sa.func.count())
                    .select_from(Backup)
                    .where(Backup.state.not_in(list(FINAL)))
                ).scalar_one()
            if open_rows == 0:
                drained_at = time.monotonic()
                break
            time.sleep(0.5)
        sampling.set()

        with db.transaction() as session:
            states = dict(
                session.execute(
                    sa.select(Backup.id, Backup.state).where(Backup.id.in_(created))
                ).all()
            )
            all_rows = session.execute(sa.select(sa.func.count()).select_from(Backup)).scalar_one()
            ran = Counter(
                session.execute(
                    sa.select(Event.backup_id).where(
                        Event.event.in_(["backup_completed", "backup_failed"])
                    )
                ).scalars()
            )

    statuses = Counter(status for status, _, _ in answers)
    final = Counter(state for state in states.values() if state in FINAL)
    lost = len(created) - sum(final.values()) + (len(created) - len(states))
    duplicates = sum(1 for count in ran.values() if count > 1)
    latencies = [took * 1000 for _, took, _ in answers]
    figures: dict[str, Any] = {
        "seconds": round(load_seconds, 1),
        "rate_per_s": args.rate,
        "posts": len(answers),
        "created": len(created),
        "refused_409": statuses.get(409, 0),
        "other_answers": {str(k): v for k, v in statuses.items() if k not in (201, 409)},
        "rows": all_rows,
        "completed": final.get("completed", 0),
        "completed_with_errors": final.get("completed_with_errors", 0),
        "failed": final.get("failed", 0),
        "lost": lost,
        "duplicates": duplicates,
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1) if latencies else None,
        "max_queue_depth": depth_max,
        "drain_seconds_after_load": round(drained_at - started - load_seconds, 1)
        if drained_at
        else None,
    }
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    ok = lost == 0 and duplicates == 0 and all_rows == len(created) and not figures["other_answers"]
    print("OK: every created backup reached a final state, once" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
