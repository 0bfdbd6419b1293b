"""Webhook delivery latency (issue 14): from an event's write to its arrival at a receiver.

Starts, on the machine's PostgreSQL and Redis, in a fresh database ``cloudbackup_bench_<random>``
and queue ``cloudbackup-bench-<random>``: ``cloudbackup web``, one ``celery worker``
(``--concurrency``, default 2), ``celery beat``, and the signature-checking receiver of the tests
(``tests/factories/webhook_receiver.py``) on loopback. One webhook takes every event. The load is
EV1 (``POST /v2/{project}/events``, one ``agent_activate`` event each) at ``--rate`` events/s
(default 100) for ``--duration`` s (default 20). Latency is the receiver's arrival time minus
the event's ``time`` (written in the event's transaction). Prints p50, p99 and max, the rate
the receiver got them at, events lost (missing once nothing arrived for ``--grace`` s) and
unsigned ones. Everything it started is removed at the end, also on errors and Ctrl-C::

    .venv/bin/python bench/webhook_latency.py [--rate 100] [--duration 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
PROJECT_ID = "110011"
RECEIVER = ROOT / "tests" / "factories" / "webhook_receiver.py"


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own process group, ended (the whole group) on the way out."""
    with log.open("ab") as out:
        child = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield child
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=10)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} not ready within {timeout} s")


def answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def complete_lines(path: Path) -> list[dict[str, Any]]:
    """The receiver's records so far (a line it is still writing is left for the next read)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line.strip()]


def run(args: argparse.Namespace, database_url: str, tmp: Path) -> dict[str, Any]:
    from cloudbackup.domain.auth import create_token
    from cloudbackup.store import migrate
    from cloudbackup.store.db import Database

    migrate.upgrade(database_url)
    db = Database(database_url)
    with db.transaction() as session:
        secret, _ = create_token(session, PROJECT_ID, ["admin"])
    db.dispose()
    queue = f"cloudbackup-bench-{secrets.token_hex(4)}"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "CLOUDBACKUP_DATA_DIR": str(tmp / "data"),
        "CLOUDBACKUP_DATABASE_URL": database_url,
        "CLOUDBACKUP_BROKER_URL": args.redis_url,
        "CLOUDBACKUP_BACKUP_QUEUE": queue,
        "CLOUDBACKUP_WEBHOOK_ALLOW_PRIVATE": "true",
        "CLOUDBACKUP_LOG_LEVEL": "WARNING",
    }
    (tmp / "data").mkdir()
    api_port, hook_port = free_port(), free_port()
    base = f"http://127.0.0.1:{api_port}"
    python = sys.executable
    celery = [python, "-m", "celery", "-A", "cloudbackup.workers.app"]
    headers = {"X-Auth-Token": secret, "Content-Type": "application/json"}
    received = tmp / "received.jsonl"
    with ExitStack() as stack:
        web = [python, "-m", "cloudbackup.cli", "web", "--port", str(api_port)]
        stack.enter_context(process(web, env, tmp / "web.log"))
        worker = [
            *celery,
            "worker",
            "--concurrency",
            str(args.concurrency),
            "--loglevel",
            "WARNING",
        ]
        stack.enter_context(process(worker, env, tmp / "worker.log"))
        beat = [*celery, "beat", "--schedule", str(tmp / "data" / "beat-schedule")]
        stack.enter_context(process(beat, env, tmp / "beat.log"))
        wait_for(lambda: answers(base + "/"), 30, "cloudbackup web")
        client = stack.enter_context(httpx.Client(base_url=base, headers=headers, timeout=10))
        hook = client.post(
            f"/v2/{PROJECT_ID}/webhooks",
            json={"url": f"http://127.0.0.1:{hook_port}/hook", "events": ["*"]},
        )
        assert hook.status_code == 201, hook.text
        receiver = [python, str(RECEIVER), "--port", str(hook_port), "--secret"]
        receiver += [hook.json()["secret"], "--log", str(received)]
        stack.enter_context(process(receiver, env, tmp / "receiver.log"))
        wait_for(lambda: listening(hook_port), 15, "the receiver")
        time.sleep(3)  # the worker's first task imports; not part of any figure

        total = int(args.rate * args.duration)

        def post_event(_: int) -> None:
            response = client.post(
                f"/v2/{PROJECT_ID}/events", json={"event": "agent_activate", "mode": "idle"}
            )
            assert response.status_code == 202, response.text

        # A few clients in parallel, paced to the rate: one alone cannot keep 100/s here.
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=args.clients))
        started = time.monotonic()
        pending = []
        for i in range(total):
            pause = started + i / args.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            pending.append(pool.submit(post_event, i))
        for future in pending:
            future.result()
        sent_seconds = time.monotonic() - started

        def arrived() -> list[dict[str, Any]]:
            return complete_lines(received)

        # Wait while deliveries keep arriving; stop once all did or none came for --grace s.
        seen, quiet_since = 0, time.monotonic()
        while seen < total and time.monotonic() - quiet_since < args.grace:
            time.sleep(0.2)
            now_seen = len({r["id"] for r in arrived()})
            if now_seen > seen:
                seen, quiet_since = now_seen, time.monotonic()
        got = arrived()
    first: dict[str, dict[str, Any]] = {}
    for record in got:
        first.setdefault(record["id"], record)
    latencies = []
    for record in first.values():
        body = json.loads(record["body"])
        written = datetime.fromisoformat(body["time"].replace("Z", "+00:00")).timestamp()
        latencies.append((record["received"] - written) * 1000)
    arrivals = sorted(r["received"] for r in first.values())
    drain = len(arrivals) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else None
    return {
        "events": total,
        "offered_rate": args.rate,
        "achieved_rate": round(total / sent_seconds, 1),
        "arrived": len(first),
        "delivered_per_second": round(drain, 1) if drain else None,
        "lost": total - len(first),  # none arrived for --grace s while these were missing
        "unsigned": sum(1 for r in got if not r["valid"]),
        "duplicates": len(got) - len(first),
        "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
        "max_ms": round(max(latencies), 1) if latencies else None,
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
        "worker_concurrency": args.concurrency,
        "load_average_1m": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument(
        "--grace", type=float, default=30.0, help="give up after this many seconds with no arrival"
    )
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--clients", type=int, default=4, help="parallel API clients")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, fresh_database(args.pg_admin_url) as url:
        figures = run(args, url, Path(folder))
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
