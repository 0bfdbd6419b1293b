"""Scale evidence for issue 5: workers draining a batch, and the scheduler under 10,000 schedules.

1. **Drain**: the same batch of small backups (``--backups``, default 60; each a folder of 20
   small files, every backup its own agent and configuration so no limit applies) is published to
   the shared queue while idle workers wait, once with 1 worker process and once with 2
   (``celery worker --concurrency 1`` each, as separate processes). It prints the time from the
   first publish to the last final state, backups per second, and the 2-worker/1-worker ratio.
2. **Scheduler**: ``--schedules`` (default 10,000) configurations whose next run falls within the
   same minute (spread evenly over it) are fired by the real tick (``domain.scheduler.tick``, as
   beat runs it every ``--tick`` seconds, default 10) publishing to real Redis. It prints every
   tick's duration and the lag distribution (fire time minus due time): "not falling behind"
   means every tick ends well within its interval, so the lag stays bounded by the interval.

Runs on the machine's PostgreSQL and Redis, in a fresh database ``cloudbackup_bench_<random>``
and queues ``cloudbackup-bench-<random>*``, all removed at the end (also on errors and Ctrl-C)::

    .venv/bin/python bench/scale_workers.py [--backups 60] [--schedules 10000] [--tick 10]
        [--skip-drain] [--skip-scheduler] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import redis
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
PROJECT_ID = "110011"
FINAL = ("completed", "completed_with_errors", "failed", "stopped", "skipped", "missed")


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    name = f"cloudbackup_bench_{secrets.token_hex(5)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settings_env(database_url: str, redis_url: str, queue: str, data: Path) -> dict[str, str]:
    return {
        "CLOUDBACKUP_DATABASE_URL": database_url,
        "CLOUDBACKUP_BROKER_URL": redis_url,
        "CLOUDBACKUP_BACKUP_QUEUE": queue,
        "CLOUDBACKUP_DATA_DIR": str(data),
        "CLOUDBACKUP_VAULT_PATH": str(data / "vault"),
        "CLOUDBACKUP_LOG_LEVEL": "INFO",  # workers log "ready." at INFO
        "CLOUDBACKUP_MAX_RUNNING_PER_AGENT": "0",
    }


def seed_agents(
    db: Any,
    count: int,
    *,
    schedule: dict[str, Any] | None = None,
    due: list[datetime] | None = None,
    folder: str = "/nonexistent/",
) -> list[str]:
    """``count`` agents with one configuration each, in two statements; configuration ids."""
    from cloudbackup.store.tables import AGENTS, CONFIGURATIONS

    now = datetime.now(UTC)
    agents, configs = [], []
    for i in range(count):
        agent_id, config_id = str(uuid.uuid4()), str(uuid.uuid4())
        agents.append(
            {
                "id": agent_id,
                "project_id": PROJECT_ID,
                "name": f"bench-{i}",
                "version": "1",
                "host_flavor": "nova",
                "host_region": "DFW",
                "host_machine_id": agent_id,
                "os_name": "Debian",
                "os_version": "12",
                "os_architecture": "64-bit",
                "fingerprint": "fp",
                "addresses": [],
                "enabled": True,
                "rsa_modulus": "c4f1",
                "rsa_exponent": 10001,
                "password_hash": "0" * 64,
                "log_level": "info",
                "vault_id": str(uuid.uuid4()),
                "vault_state": "created",
                "vault_flavor": "swift",
                "vault_encrypted": False,
                "vault_region": "DFW",
                "vault_use_internal": False,
                "registered_time": now,
                "deleted": False,
            }
        )
        configs.append(
            {
                "id": config_id,
                "project_id": PROJECT_ID,
                "agent_id": agent_id,
                "name": f"bench-{i}",
                "enabled": True,
                "schedule": schedule,
                "retention_days": 0,
                "inclusions": [{"type": "folder", "path": folder}],
                "exclusions": [],
                "notifications": [],
                "deleted": False,
                "next_scheduled_time": due[i] if due else None,
                "created_at": now,
                "updated_at": now,
            }
        )
    with db.transaction() as session:
        for start in range(0, count, 2000):
            session.execute(sa.insert(AGENTS), agents[start : start + 2000])
            session.execute(sa.insert(CONFIGURATIONS), configs[start : start + 2000])
    return [c["id"] for c in configs]


class Workers:
    def __init__(self, env: dict[str, str], count: int, logs: Path) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        for i in range(count):
            log = (logs / f"worker{i}.log").open("wb")
            self.processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "cloudbackup.workers.app",
                        "worker",
                        "--concurrency",
                        "1",
                        "--loglevel",
                        "INFO",
                        "--without-gossip",
                        "--without-mingle",
                        "--hostname",
                        f"bench{i}-{secrets.token_hex(3)}@%h",
                    ],
                    cwd=ROOT,
                    env={**os.environ, **env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 60
        for i in range(count):
            while "ready." not in (logs / f"worker{i}.log").read_text(errors="replace"):
                if time.monotonic() > deadline or self.processes[i].poll() is not None:
                    raise RuntimeError((logs / f"worker{i}.log").read_text()[-2000:])
                time.sleep(0.2)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def drain(args: argparse.Namespace, database_url: str, workers: int, tmp: Path) -> dict[str, Any]:
    from cloudbackup.domain.backups import BackupService
    from cloudbackup.queue.publishing import CeleryDispatcher
    from cloudbackup.settings import load_settings
    from cloudbackup.store.db import Database

    queue = f"cloudbackup-bench-{secrets.token_hex(4)}"
    data = tmp / f"drain{workers}"
    (data / "tree").mkdir(parents=True)
    for i in range(20):
        (data / "tree" / f"f{i}.txt").write_bytes(os.urandom(2048))
    env = settings_env(database_url, args.redis_url, queue, data)
    settings = load_settings(env)
    db = Database(database_url)
    sa.orm.configure_mappers()  # B1 builds its row with model_construct: mappers must be ready
    configs = seed_agents(db, args.backups, folder=f"{data / 'tree'}/")
    pool = Workers(env, workers, data)
    try:
        dispatcher = CeleryDispatcher.from_settings(settings, database=db)
        service = BackupService(db, dispatcher)
        began = time.monotonic()
        ids = [service.start(PROJECT_ID, c, "start_requested", None).id for c in configs]
        from cloudbackup.store.tables import BACKUPS

        while True:
            with db.transaction() as session:
                done = session.execute(
                    sa.select(sa.func.count()).where(
                        BACKUPS.c.id.in_(ids), BACKUPS.c.state.in_(FINAL)
                    )
                ).scalar_one()
            if done == len(ids):
                break
            if time.monotonic() - began > 600:
                raise RuntimeError(f"only {done}/{len(ids)} finished in 600 s")
            time.sleep(0.05)
        seconds = time.monotonic() - began
        with db.transaction() as session:
            states = dict(
                session.execute(
                    sa.select(BACKUPS.c.state, sa.func.count())
                    .where(BACKUPS.c.id.in_(ids))
                    .group_by(BACKUPS.c.state)
                ).all()
            )
    finally:
        pool.stop()
        redis.Redis.from_url(args.redis_url).delete(
            queue, f"{queue}.scheduled", f"{queue}.maintenance"
        )
        db.dispose()
    return {
        "workers": workers,
        "backups": len(ids),
        "seconds": round(seconds, 2),
        "per_second": round(len(ids) / seconds, 1),
        "states": states,
    }


def scheduler_run(args: argparse.Namespace, database_url: str, tmp: Path) -> dict[str, Any]:
    from cloudbackup.domain import scheduler
    from cloudbackup.queue.publishing import CeleryDispatcher
    from cloudbackup.settings import load_settings
    from cloudbackup.store.db import Database

    queue = f"cloudbackup-bench-{secrets.token_hex(4)}"
    settings = load_settings(settings_env(database_url, args.redis_url, queue, tmp / "sched"))
    db = Database(database_url)
    # Every configuration is due once within one minute, starting a few seconds from now.
    minute = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=args.tick + 5)
    n = args.schedules
    due = [minute + timedelta(seconds=60 * i / n) for i in range(n)]
    schedule = {
        "start": "2020-01-01T00:00:00Z",
        "recurrence": ["RRULE:FREQ=HOURLY"],
        "time_zone": "UTC",
    }
    print(
        f"seeding {n} configurations due between {due[0]:%H:%M:%S} and {due[-1]:%H:%M:%S} ...",
        flush=True,
    )
    seed_agents(db, n, schedule=schedule, due=due)
    dispatcher = CeleryDispatcher.from_settings(settings, database=db).scheduled()
    ticks: list[dict[str, Any]] = []
    lags: list[float] = []
    try:
        next_tick = time.monotonic()
        while len(lags) < n:
            time.sleep(max(0.0, next_tick - time.monotonic()))
            next_tick += args.tick
            began = time.perf_counter()
            report = scheduler.tick(db, dispatcher, settings)
            ticks.append({"fired": report.fired, "seconds": round(time.perf_counter() - began, 3)})
            lags += report.lags
            print(f"  tick: fired {report.fired:5d} in {ticks[-1]['seconds']:.2f} s", flush=True)
            if len(ticks) > 60 / args.tick + 10:
                raise RuntimeError("the scheduler fell behind: schedules still due")
        depth = redis.Redis.from_url(args.redis_url).llen(f"{queue}.scheduled")
    finally:
        redis.Redis.from_url(args.redis_url).delete(
            queue, f"{queue}.scheduled", f"{queue}.maintenance"
        )
        db.dispose()
    lags.sort()

    def pct(p: float) -> float:
        return round(lags[min(len(lags) - 1, int(p / 100 * len(lags)))], 2)

    busiest = max(t["seconds"] for t in ticks)
    return {
        "schedules": n,
        "fired": len(lags),
        "published": depth,
        "tick_interval": args.tick,
        "ticks": ticks,
        "busiest_tick_seconds": busiest,
        "fired_per_second": round(
            sum(t["fired"] for t in ticks) / sum(t["seconds"] for t in ticks), 1
        ),
        "lag_seconds": {
            "min": pct(0),
            "p50": pct(50),
            "p90": pct(90),
            "p99": pct(99),
            "max": round(lags[-1], 2),
            "mean": round(statistics.fmean(lags), 2),
        },
        "kept_up": busiest < args.tick,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backups", type=int, default=60)
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--tick", type=float, default=10.0)
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument("--skip-scheduler", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from cloudbackup.store import migrate

    results: dict[str, Any] = {}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cb-scale-")))
        database_url = stack.enter_context(fresh_database(args.pg_admin_url))
        migrate.upgrade(database_url)
        if not args.skip_drain:
            runs = []
            for workers in (1, 2):
                print(f"draining {args.backups} backups with {workers} worker(s) ...", flush=True)
                runs.append(drain(args, database_url, workers, tmp))
                print(f"  {runs[-1]}", flush=True)
            results["drain"] = {
                "runs": runs,
                "speedup_2_over_1": round(runs[0]["seconds"] / runs[1]["seconds"], 2),
            }
        if not args.skip_scheduler:
            results["scheduler"] = scheduler_run(args, database_url, tmp)

    print("\n== results ==")
    if "drain" in results:
        for run in results["drain"]["runs"]:
            print(
                f"drain, {run['workers']} worker(s): {run['backups']} backups in "
                f"{run['seconds']} s = {run['per_second']}/s  {run['states']}"
            )
        print(f"2 workers / 1 worker speed-up: {results['drain']['speedup_2_over_1']}x")
    if "scheduler" in results:
        s = results["scheduler"]
        print(
            f"scheduler: {s['fired']}/{s['schedules']} fired (published {s['published']}), "
            f"tick every {s['tick_interval']} s, busiest tick {s['busiest_tick_seconds']} s, "
            f"{s['fired_per_second']} firings/s while ticking"
        )
        print(f"lag (fire time - due time) seconds: {s['lag_seconds']}")
        print(
            "kept up: " + ("yes" if s["kept_up"] else "NO (a tick took longer than its interval)")
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
