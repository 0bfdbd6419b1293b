"""Benchmark of B1, ``POST /v2/{project_id}/backups`` (start a backup), against the real stack.

What it measures: requests per second and latency (p50, p99) of starting a manual backup
(``state: start_requested``) with 50 concurrent keep-alive clients for a fixed time, on

* **ours**: ``cloudbackup web`` exactly as the Procfile starts it (uvicorn, 1 worker) on a fresh
  PostgreSQL database and a real Redis broker (each 201 is a committed row + event and a published
  Celery task; no worker runs, so the tasks just queue up);
* **naive**: a Litestar app doing one SQLAlchemy async INSERT into PostgreSQL + one Redis ``LPUSH``;
* **bare**: a Litestar app answering the same 201 body with no I/O (the framework's ceiling).

All three are served by uvicorn with the same settings and loaded identically with ``wrk``
(installed with apt-get when missing; an asyncio load generator is the fallback). Every request to
ours names a different configuration (a second start of the same configuration is a 409), so the
run seeds one agent and tens of thousands of configurations. Any answer other than 2xx is counted
and reported loudly: a run with errors is not a valid measurement. The issue's target is printed
with the verdict: ours >= 1.0x naive req/s with p99 <= 100 ms at 50 clients.

Everything it creates is removed at the end, also on errors and Ctrl-C: the servers, the database
``cloudbackup_bench_<random>``, the Redis queue ``cloudbackup-bench-<random>`` and temp files.

Run (PostgreSQL and Redis on 127.0.0.1; needs root or wrk already installed)::

    .venv/bin/python bench/api_start_backup.py [--duration 10] [--rounds 3] [--json out.json]

``--py-spy FILE`` also samples our server with py-spy during its last measured run and prints the
top costs (``pip install py-spy`` into the venv first).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import math
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import psycopg
import redis
import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
PROJECT_ID = "110011"
TARGETS = ("bare", "naive", "ours")
GOAL_RPS_RATIO = 1.0  # ours / naive
GOAL_P99_MS = 100.0
GOAL_CLIENTS = 50
# Upper bound of the rate any target could reach here (bare Litestar does ~6-8k req/s): sizes the
# number of configurations so that ours never runs out of fresh ones.
MAX_RATE = 6_000

LoadGen = Literal["wrk", "asyncio"]


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- results -------------------------------------------------------------------------------------
@dataclass
class LoadResult:
    """One measured (or warm-up) load of one target."""

    target: str
    generator: str
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[int, int]
    socket_errors: dict[str, int]
    next_position: int  # first configuration index this load did not use
    server_cpu_s: float = math.nan  # CPU time the server process used during the load
    server_cpu_pct: float = math.nan  # the same per wall second (100 = one core)
    host_cpu_pct: float = math.nan  # CPU of the whole machine (100 x cores = all busy)

    @property
    def server_cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu_s / self.requests if self.requests else math.nan

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())

    def describe_errors(self) -> str:
        parts = [f"{n} x HTTP {s}" for s, n in sorted(self.statuses.items()) if not 200 <= s < 300]
        parts += [f"{n} x {kind}" for kind, n in sorted(self.socket_errors.items()) if n]
        return ", ".join(parts)


@dataclass
class Summary:
    """Medians over the rounds of one target."""

    target: str
    rounds: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    requests: int
    server_cpu_pct: float
    server_cpu_ms_per_request: float
    host_cpu_pct: float


def summarize(results: Sequence[LoadResult]) -> Summary:
    return Summary(
        target=results[0].target,
        rounds=len(results),
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        socket_errors=sum(sum(r.socket_errors.values()) for r in results),
        requests=sum(r.requests for r in results),
        server_cpu_pct=statistics.median(r.server_cpu_pct for r in results),
        server_cpu_ms_per_request=statistics.median(r.server_cpu_ms_per_request for r in results),
        host_cpu_pct=statistics.median(r.host_cpu_pct for r in results),
    )


# -- environment: wrk, ports ---------------------------------------------------------------------
def ensure_wrk() -> str | None:
    """The path of wrk, installing it with apt-get when missing; None if that is impossible."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        log("wrk is missing and cannot be installed (not root or no apt-get)")
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    steps = (
        ["apt-get", "install", "-y", "wrk"],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "wrk"],
    )
    for step in steps:
        log(f"wrk is missing: running {' '.join(step)}")
        done = subprocess.run(step, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log(f"{' '.join(step)} failed: {done.stderr.strip()[-300:]}")
        elif step[1] == "install":
            break
    return shutil.which("wrk")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- database and broker fixtures ------------------------------------------------------------------
@contextmanager
def bench_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database; dropped (connections and all) on exit."""
    name = f"cloudbackup_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    log(f"created database {name}")
    try:
        yield sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        log(f"dropped database {name}")


@dataclass
class Seed:
    token: str
    agent_id: str
    configuration_ids: list[str]


def seed_database(url: str, configurations: int) -> Seed:
    """Migrate, then insert one agent, an admin token and ``configurations`` configurations."""
    from cloudbackup.domain.auth import create_token, hash_token
    from cloudbackup.store import migrate
    from cloudbackup.store.db import Database
    from cloudbackup.store.tables import Agent

    started = time.perf_counter()
    migrate.upgrade(url)
    db = Database(url)
    try:
        agent_id = secrets.token_hex(16)
        with db.transaction() as session:
            session.add(
                Agent(
                    id=agent_id,
                    project_id=PROJECT_ID,
                    name="Bench Server",
                    version="1.23.008344",
                    host_flavor="nova",
                    host_region="DFW",
                    host_machine_id=secrets.token_hex(16),
                    os_name="Ubuntu",
                    os_version="14.04",
                    os_architecture="64-bit",
                    fingerprint="fp",
                    addresses=[{"version": 4, "addr": "67.23.10.132"}],
                    rsa_modulus="c4f1",
                    rsa_exponent=10001,
                    password_hash=hash_token("password"),
                    vault_id=secrets.token_hex(16),
                    vault_region="DFW",
                )
            )
            session.flush()
            token, _ = create_token(session, PROJECT_ID, ["admin"])
            # One statement, all server-side: a few hundred ms for 100k rows.
            ids = session.execute(
                sa.text(
                    """
                    INSERT INTO configurations (id, project_id, agent_id, name, enabled,
                        schedule, retention_days, inclusions, exclusions, notifications,
                        deleted, created_at, updated_at)
                    SELECT gen_random_uuid()::text, :project, :agent, 'Nightly ' || n, true,
                        NULL, 30, CAST(:inclusions AS json), CAST('[]' AS json),
                        CAST('[]' AS json), false, now(), now()
                    FROM generate_series(1, :n) AS n
                    RETURNING id
                    """
                ),
                {
                    "project": PROJECT_ID,
                    "agent": agent_id,
                    "inclusions": json.dumps([{"type": "folder", "path": "/web/"}]),
                    "n": configurations,
                },
            ).scalars()
            configuration_ids = list(ids)
        with db.engine.connect() as conn:
            conn.execute(sa.text("ANALYZE"))
    finally:
        db.dispose()
    log(
        f"migrated and seeded 1 agent, {len(configuration_ids):,} configurations and a token "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return Seed(token=token, agent_id=agent_id, configuration_ids=configuration_ids)


def count_rows(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0


def redis_cleanup(redis_url: str, names: Sequence[str]) -> None:
    """Delete the keys this run created (the queue, kombu's binding, the naive list)."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = {key for name in names for key in client.scan_iter(match=f"*{name}*", count=1000)}
        if keys:
            client.delete(*keys)
        log(f"deleted {len(keys)} Redis key(s) of this run")
    finally:
        client.close()


def redis_list_length(redis_url: str, key: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.llen(key))
    finally:
        client.close()


# -- servers -------------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def clean_env() -> dict[str, str]:
    """The environment without any CLOUDBACKUP_* setting of the caller's shell."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CLOUDBACKUP_")}


def cloudbackup_command() -> list[str]:
    script = Path(sys.executable).parent / "cloudbackup"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cloudbackup.cli"]


@contextmanager
def run_server(
    name: str, command: list[str], env: dict[str, str], port: int, workdir: Path
) -> Iterator[Server]:
    """Start a server in its own session, wait until it answers HTTP, stop it on exit."""
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = Server(name=name, port=port, process=process, log_path=log_path)
    try:
        wait_until_answering(server)
        yield server
    finally:
        stop_process(process)


def wait_until_answering(server: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not answer within {timeout} s:\n{server.log_tail()}")


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGINT (uvicorn's graceful shutdown), then SIGKILL after ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- load generation -----------------------------------------------------------------------------
WRK_SCRIPT = r"""
-- Written by bench/api_start_backup.py. Args: ids_file path token offset stride.
-- Thread k sends configuration ids offset+k, offset+k+stride, ... so no id is sent twice.
local threads = {}
local created = 0

function setup(thread)
  thread:set("thread_index", created)
  created = created + 1
  table.insert(threads, thread)
end

function init(args)
  ids = {}
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  position = tonumber(args[4]) + thread_index
  stride = tonumber(args[5])
  statuses = {}
  wrk.method = "POST"
  wrk.path = args[2]
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Auth-Token"] = args[3]
end

function request()
  local id = ids[(position % #ids) + 1]
  position = position + stride
  return wrk.format(nil, nil, nil,
    '{"configuration_id":"' .. id .. '","state":"start_requested"}')
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged, next_position = {}, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + n
    end
    next_position = math.max(next_position, thread:get("position"))
  end
  local parts = {}
  for status, n in pairs(merged) do
    parts[#parts + 1] = string.format('"%d": %d', status, n)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "statuses": {%s}, "next_position": %d, ' ..
    '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, table.concat(parts, ", "), next_position,
    e.connect, e.read, e.write, e.timeout))
end
"""


@dataclass
class LoadSpec:
    """How every target is loaded (identically)."""

    generator: LoadGen
    wrk: str | None
    connections: int
    threads: int
    timeout_s: float
    ids_file: Path
    ids: list[str]
    token: str
    lua_file: Path
    path: str = f"/v2/{PROJECT_ID}/backups"


def run_load(spec: LoadSpec, target: str, port: int, duration: float, offset: int) -> LoadResult:
    if spec.generator == "wrk" and spec.wrk:
        return run_wrk(spec, target, port, duration, offset)
    return asyncio.run(run_asyncio_load(spec, target, port, duration, offset))


def run_wrk(spec: LoadSpec, target: str, port: int, duration: float, offset: int) -> LoadResult:
    assert spec.wrk is not None
    command = [
        spec.wrk,
        f"-t{spec.threads}",
        f"-c{spec.connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={max(1, round(spec.timeout_s))}s",
        "-s",
        str(spec.lua_file),
        f"http://127.0.0.1:{port}",
        "--",
        str(spec.ids_file),
        spec.path,
        spec.token,
        str(offset),
        str(spec.threads),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.split(" ", 1)[1])
    duration_s = raw["duration_us"] / 1e6
    return LoadResult(
        target=target,
        generator="wrk",
        duration_s=duration_s,
        requests=raw["requests"],
        rps=raw["requests"] / duration_s if duration_s else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        statuses={int(k): v for k, v in raw["statuses"].items()},
        socket_errors={k: v for k, v in raw["socket_errors"].items() if v},
        next_position=raw["next_position"],
    )


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for item in lines[1:]:
        if ":" in item:
            key, value = item.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    if "content-length" not in headers:
        raise ValueError("response without Content-Length")
    await reader.readexactly(int(headers["content-length"]))
    return status, headers.get("connection", "").lower() != "close"


async def run_asyncio_load(
    spec: LoadSpec, target: str, port: int, duration: float, offset: int
) -> LoadResult:
    """The fallback generator: ``spec.connections`` keep-alive HTTP/1.1 clients in one loop."""
    loop = asyncio.get_running_loop()
    position = offset
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    started = loop.time()
    deadline = started + duration

    async def client() -> None:
        nonlocal position
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while loop.time() < deadline:
            if reader is None or writer is None:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    errors["connect"] += 1
                    await asyncio.sleep(0.01)
                    continue
            configuration_id = spec.ids[position % len(spec.ids)]
            position += 1
            body = (
                f'{{"configuration_id":"{configuration_id}","state":"start_requested"}}'
            ).encode()
            request = (
                f"POST {spec.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: application/json\r\nX-Auth-Token: {spec.token}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            sent = time.perf_counter()
            try:
                writer.write(request)
                status, keep_alive = await asyncio.wait_for(_read_response(reader), spec.timeout_s)
            except TimeoutError:
                errors["timeout"] += 1
                keep_alive = False
            except (OSError, ValueError, asyncio.IncompleteReadError):
                errors["read"] += 1
                keep_alive = False
            else:
                latencies.append(time.perf_counter() - sent)
                statuses[status] += 1
            if not keep_alive:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(client() for _ in range(spec.connections)))
    elapsed = loop.time() - started
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return math.nan
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    return LoadResult(
        target=target,
        generator="asyncio",
        duration_s=elapsed,
        requests=len(latencies),
        rps=len(latencies) / elapsed if elapsed else 0.0,
        p50_ms=pct(50),
        p90_ms=pct(90),
        p99_ms=pct(99),
        max_ms=latencies[-1] * 1000 if latencies else math.nan,
        statuses=dict(statuses),
        socket_errors=dict(errors),
        next_position=position,
    )


def check_one_request(spec: LoadSpec, port: int, configuration_id: str) -> tuple[int, str]:
    """One request by hand before loading: its status and (on failure) body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "POST",
            spec.path,
            body=json.dumps({"configuration_id": configuration_id, "state": "start_requested"}),
            headers={"Content-Type": "application/json", "X-Auth-Token": spec.token},
        )
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        if response.status == 201 and not response.getheader("Location"):
            return 0, "201 without a Location header"
        return response.status, body
    finally:
        conn.close()


# -- profiling -----------------------------------------------------------------------------------
def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def host_busy_seconds() -> float:
    """CPU seconds all cores of the machine spent busy (not idle or in iowait) since boot."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return math.nan
    busy = sum(values[:8]) - values[3] - values[4]  # user..steal minus idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def start_py_spy(
    pid: int, duration: float, output: Path, gil: bool
) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        log("--py-spy given but py-spy is not installed (.venv/bin/pip install py-spy)")
        return None
    command = [py_spy, "record", "--pid", str(pid), "--duration", str(max(1, round(duration)))]
    command += ["--rate", "200", "--format", "raw", "--nonblocking", "--output", str(output)]
    if gil:
        command.append("--gil")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def print_profile(folded: Path, top: int = 20) -> None:
    """Top frames of a py-spy raw (folded) profile: inclusive and self share of samples."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    if not total:
        log("py-spy recorded no samples")
        return
    print(f"\npy-spy profile of ours ({total} samples, {folded}):", file=sys.stderr)
    for title, counter in (("inclusive", inclusive), ("self", own)):
        print(f"  top {top} by {title} time:", file=sys.stderr)
        for frame, count in counter.most_common(top):
            print(f"    {100 * count / total:5.1f}%  {frame[:150]}", file=sys.stderr)


# -- the benchmark -------------------------------------------------------------------------------
@dataclass
class Context:
    args: argparse.Namespace
    workdir: Path
    database_url: str
    redis_url: str
    queue: str
    naive_key: str
    spec: LoadSpec
    ours_position: int = 0
    ours_created: int = 0  # 201 answers of ours, warm-ups and checks included
    ours_loads: int = 0  # loads of ours: each may leave up to `connections` answers unread


def server_for(ctx: Context, target: str, port: int) -> tuple[list[str], dict[str, str]]:
    env = clean_env()
    env["PYTHONUNBUFFERED"] = "1"
    if target == "ours":
        data_dir = ctx.workdir / "data"
        data_dir.mkdir(exist_ok=True)
        env |= {
            "CLOUDBACKUP_DATABASE_URL": ctx.database_url,
            "CLOUDBACKUP_BROKER_URL": ctx.redis_url,
            "CLOUDBACKUP_DATA_DIR": str(data_dir),
            "CLOUDBACKUP_BACKUP_QUEUE": ctx.queue,
        }
        return [*cloudbackup_command(), "web", "--host", "127.0.0.1", "--port", str(port)], env
    command = [sys.executable, str(HERE / "reference_apps.py"), target, "--port", str(port)]
    if target == "naive":
        command += ["--database-url", ctx.database_url, "--redis-url", ctx.redis_url]
        command += ["--redis-key", ctx.naive_key]
    return command, env


def measure(ctx: Context, target: str, profile: Path | None) -> LoadResult:
    """Start ``target``, check one request, warm up, load it, stop it."""
    args = ctx.args
    port = free_port()
    command, env = server_for(ctx, target, port)
    with run_server(target, command, env, port, ctx.workdir) as server:
        position = ctx.ours_position if target == "ours" else 0
        status, body = check_one_request(ctx.spec, port, ctx.spec.ids[position % len(ctx.spec.ids)])
        position += 1
        if status != 201:
            log(f"!!! {target}: the check request got {status} instead of 201: {body[:500]}")
        elif target == "ours":
            ctx.ours_created += 1
        if args.warmup > 0:
            warm = run_load(ctx.spec, target, port, args.warmup, position)
            position = warm.next_position
            if target == "ours":
                ctx.ours_created += warm.statuses.get(201, 0)
                ctx.ours_loads += 1
            log(f"{target}: warm-up {warm.rps:,.0f} req/s, {warm.errors} errors")
        pid = server.process.pid
        spy = start_py_spy(pid, args.duration, profile, args.py_spy_gil) if profile else None
        cpu_before, busy_before = process_cpu_seconds(pid), host_busy_seconds()
        wall_before = time.monotonic()
        result = run_load(ctx.spec, target, port, args.duration, position)
        wall = time.monotonic() - wall_before
        result.server_cpu_s = process_cpu_seconds(pid) - cpu_before
        result.server_cpu_pct = 100 * result.server_cpu_s / wall
        result.host_cpu_pct = 100 * (host_busy_seconds() - busy_before) / wall
        if spy is not None:
            spy.wait()
        if target == "ours":
            ctx.ours_position = result.next_position
            ctx.ours_created += result.statuses.get(201, 0)
            ctx.ours_loads += 1
            if result.next_position > len(ctx.spec.ids):
                log("!!! ours ran out of fresh configurations (409s follow): use --configurations")
        if server.process.poll() is not None:
            log(f"!!! {target} died during the run:\n{server.log_tail()}")
        elif result.errors and server.log_tail(10):
            log(f"{target} log tail:\n{server.log_tail(10)}")
    log(
        f"{target}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms, {result.requests:,} requests"
        + (f", ERRORS: {result.describe_errors()}" if result.errors else "")
    )
    return result


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def report(
    summaries: dict[str, Summary],
    results: list[LoadResult],
    ctx: Context,
    integrity: dict[str, Any],
) -> dict[str, Any]:
    ours, naive, bare = (summaries.get(t) for t in ("ours", "naive", "bare"))
    ratios: dict[str, float] = {}
    if ours and naive:
        ratios |= {
            "ours/naive req/s": ratio(ours.rps, naive.rps),
            "ours/naive p99": ratio(ours.p99_ms, naive.p99_ms),
        }
    if ours and bare:
        ratios |= {
            "ours/bare req/s": ratio(ours.rps, bare.rps),
            "ours/bare p99": ratio(ours.p99_ms, bare.p99_ms),
        }
    goal: dict[str, Any] = {
        "text": f"ours >= {GOAL_RPS_RATIO:.1f}x naive req/s with p99 <= {GOAL_P99_MS:g} ms "
        f"at {GOAL_CLIENTS} clients",
        "clients": ctx.spec.connections,
    }
    if ours and naive:
        rps_ok = ours.rps >= GOAL_RPS_RATIO * naive.rps
        p99_ok = ours.p99_ms <= GOAL_P99_MS
        clean = ours.non_2xx == 0 and ours.socket_errors == 0
        goal |= {"rps_met": rps_ok, "p99_met": p99_ok, "no_errors": clean}
        goal["met"] = rps_ok and p99_ok and clean and ctx.spec.connections == GOAL_CLIENTS
    return {
        "settings": {
            "duration_s": ctx.args.duration,
            "warmup_s": ctx.args.warmup,
            "rounds": ctx.args.rounds,
            "connections": ctx.spec.connections,
            "threads": ctx.spec.threads,
            "generator": ctx.spec.generator,
            "configurations": len(ctx.spec.ids),
            "cpus": os.cpu_count(),
        },
        "summary": {name: asdict(s) for name, s in summaries.items()},
        "ratios": ratios,
        "goal": goal,
        "integrity": integrity,
        "runs": [
            asdict(r)
            | {"non_2xx": r.non_2xx, "server_cpu_ms_per_request": r.server_cpu_ms_per_request}
            for r in results
        ],
    }


def render(data: dict[str, Any]) -> str:
    s = data["settings"]
    generator = (
        f"wrk with {s['threads']} threads" if s["generator"] == "wrk" else "asyncio load generator"
    )
    lines = [
        f"B1 POST /v2/{{project_id}}/backups: {s['connections']} connections, {generator}, "
        f"{s['duration_s']:g} s per run (after {s['warmup_s']:g} s "
        f"warm-up), {s['rounds']} round(s), median shown, {s['cpus']} CPUs",
        "",
        f"{'target':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
        f"{'sock err':>8} {'requests':>9} {'srv cpu%':>8} {'cpu ms/req':>10} {'host cpu%':>9}",
    ]
    for name in TARGETS:
        row = data["summary"].get(name)
        if row is None:
            continue
        lines.append(
            f"{name:<8} {row['rps']:>9,.0f} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} "
            f"{row['non_2xx']:>8,} {row['socket_errors']:>8,} {row['requests']:>9,} "
            f"{row['server_cpu_pct']:>8.0f} {row['server_cpu_ms_per_request']:>10.2f} "
            f"{row['host_cpu_pct']:>9.0f}"
        )
    lines += [
        f"(requests: total over the rounds; srv cpu%: the server process, 100 = one core; "
        f"host cpu%: the whole machine, {100 * (s['cpus'] or 1)} = all cores, incl. wrk, "
        f"PostgreSQL, Redis and other users)",
        "",
    ]
    for name, value in data["ratios"].items():
        lines.append(f"{name:<18} {value:6.2f}x")
    goal = data["goal"]
    if "met" in goal:
        ours = data["summary"]["ours"]
        naive_rps = data["summary"]["naive"]["rps"]
        verdict = "MET" if goal["met"] else "NOT MET"
        lines += [
            "",
            f"Target (issue): {goal['text']}: {verdict}",
            f"  req/s {ours['rps']:,.0f} vs naive {naive_rps:,.0f} "
            f"({'ok' if goal['rps_met'] else 'too slow'}); p99 {ours['p99_ms']:.1f} ms "
            f"({'ok' if goal['p99_met'] else 'too slow'}); "
            f"{'no errors' if goal['no_errors'] else 'ERRORS'}"
            + ("" if goal["clients"] == GOAL_CLIENTS else f"; run at {goal['clients']} clients"),
        ]
    integrity = data["integrity"]
    if integrity:
        lines.append(
            f"Integrity of ours: 201s read by the client {integrity['created']:,} (+ up to "
            f"{integrity['unread_max']:,} in flight at the end of loads); rows in backups "
            f"{integrity['backup_rows']:,}; tasks queued {integrity['queued']:,}: "
            + ("consistent" if integrity["consistent"] else "MISMATCH  <--")
        )
    bad = [r for r in data["runs"] if r["non_2xx"] or r["socket_errors"]]
    if bad:
        lines.append("")
        lines.append("!" * 78)
        for run in bad:
            statuses = {k: v for k, v in run["statuses"].items() if not 200 <= int(k) < 300}
            lines.append(
                f"!!! {run['target']}: {run['non_2xx']:,} non-2xx {statuses} and socket errors "
                f"{run['socket_errors']}: THIS RUN IS NOT A VALID MEASUREMENT"
            )
        lines.append("!" * 78)
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per run")
    parser.add_argument("--rounds", type=int, default=1, help="runs per target (median shown)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--timeout", type=float, default=10.0, help="request timeout (s)")
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help="comma-separated subset of bare,naive,ours"
    )
    parser.add_argument(
        "--configurations",
        type=int,
        default=0,
        help="configurations to seed (default: enough for MAX_RATE req/s, at least 40,000)",
    )
    parser.add_argument("--generator", choices=["auto", "wrk", "asyncio"], default="auto")
    parser.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a database to connect to for CREATE/DROP DATABASE",
    )
    parser.add_argument("--redis-host", default="127.0.0.1:6379")
    parser.add_argument("--redis-db", type=int, default=14, help="Redis DB used by this run")
    parser.add_argument(
        "--json", metavar="FILE", help="also write the results as JSON ('-': stdout)"
    )
    parser.add_argument("--py-spy", metavar="FILE", type=Path, help="profile ours (folded stacks)")
    parser.add_argument(
        "--py-spy-gil", action="store_true", help="sample only the thread holding the GIL"
    )
    args = parser.parse_args(argv)
    unknown = set(args.targets.split(",")) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    if args.duration <= 0 or args.rounds < 1 or args.connections < 1 or args.threads < 1:
        parser.error("--duration, --rounds, --connections and --threads must be positive")
    return args


def run(args: argparse.Namespace, stack: ExitStack) -> dict[str, Any]:
    targets = [t for t in TARGETS if t in args.targets.split(",")]
    generator: LoadGen = "asyncio"
    wrk_path: str | None = None
    if args.generator in ("auto", "wrk"):
        wrk_path = ensure_wrk()
        if wrk_path:
            generator = "wrk"
        elif args.generator == "wrk":
            raise SystemExit("wrk is not available")
        else:
            log("!!! falling back to the asyncio load generator (figures not comparable to wrk)")
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cloudbackup-bench-")))
    run_id = secrets.token_hex(4)
    queue = f"cloudbackup-bench-{run_id}"
    naive_key = f"cloudbackup-bench-naive-{run_id}"
    redis_url = f"redis://{args.redis_host}/{args.redis_db}"
    redis.Redis.from_url(redis_url).ping()
    stack.callback(redis_cleanup, redis_url, [queue, naive_key])

    per_run = args.warmup + args.duration
    configurations = args.configurations or max(
        40_000, math.ceil(MAX_RATE * per_run * args.rounds) + 1_000
    )
    database_url = stack.enter_context(bench_database(args.pg_admin_url))
    seed = seed_database(database_url, configurations)
    ids_file = workdir / "configuration_ids.txt"
    ids_file.write_text("\n".join(seed.configuration_ids) + "\n")
    lua_file = workdir / "start_backup.lua"
    lua_file.write_text(WRK_SCRIPT)
    spec = LoadSpec(
        generator=generator,
        wrk=wrk_path,
        connections=args.connections,
        threads=args.threads,
        timeout_s=args.timeout,
        ids_file=ids_file,
        ids=seed.configuration_ids,
        token=seed.token,
        lua_file=lua_file,
    )
    ctx = Context(args, workdir, database_url, redis_url, queue, naive_key, spec)

    results: list[LoadResult] = []
    for round_no in range(1, args.rounds + 1):
        for target in targets:
            log(f"round {round_no}/{args.rounds}: {target}")
            last_ours = target == "ours" and round_no == args.rounds
            profile = args.py_spy if args.py_spy and last_ours else None
            results.append(measure(ctx, target, profile))
    if args.py_spy and Path(args.py_spy).exists():
        print_profile(Path(args.py_spy))

    integrity: dict[str, Any] = {}
    if "ours" in targets:
        rows = count_rows(database_url, "backups")
        queued = redis_list_length(redis_url, queue)
        # A load stops with up to `connections` requests in flight: the server still commits and
        # publishes them, but the client never reads their 201.
        unread_max = ctx.ours_loads * args.connections
        integrity = {
            "created": ctx.ours_created,
            "unread_max": unread_max,
            "backup_rows": rows,
            "queued": queued,
            "consistent": rows == queued and 0 <= rows - ctx.ours_created <= unread_max,
        }
    summaries = {t: summarize([r for r in results if r.target == t]) for t in targets}
    return report(summaries, results, ctx, integrity)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with ExitStack() as stack:
            try:
                data = run(args, stack)
            finally:
                # Let the clean-up (servers, database, Redis keys, temp files) finish.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except KeyboardInterrupt:
        log("interrupted; cleaned up")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    table = render(data)
    if args.json == "-":
        print(table, file=sys.stderr)
        print(json.dumps(data, indent=2))
    else:
        print(table)
        if args.json:
            Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return 1 if any(r["non_2xx"] or r["socket_errors"] for r in data["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
