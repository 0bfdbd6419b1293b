"""The machine's real services for integration tests: a fresh PostgreSQL database, a Redis
database, and real Celery worker processes started from our own `workers` package."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis

PG_ADMIN_URL = os.environ.get(
    "CLOUDBACKUP_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CLOUDBACKUP_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
ROOT = Path(__file__).resolve().parents[2]


def require_services() -> None:
    """Fail (never skip) when PostgreSQL or Redis is missing: `.ci/run` starts them."""
    problems = []
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            pass
    except Exception as exc:
        problems.append(f"PostgreSQL at {PG_ADMIN_URL}: {exc}")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:
        problems.append(f"Redis at {REDIS_URL}: {exc}")
    if problems:
        raise RuntimeError(
            "Integration tests need the real services; start them (see .ci/run): "
            + "; ".join(problems)
        )


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """Create an empty database, yield its plain postgresql:// URL, drop it afterwards."""
    name = f"cloudbackup_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class WorkerProcess:
    """A real `celery worker` process with the given CLOUDBACKUP_* environment."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        concurrency: int = 2,
        name: str = "w1",
        argv: list[str] | None = None,
    ) -> None:
        """``argv`` replaces the plain `celery worker` command (e.g. `cloudbackup agent`)."""
        self.argv = argv
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.concurrency = concurrency
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv
            or [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "cloudbackup.workers.app",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(self.concurrency),
                "--hostname",
                f"{self.name}-{uuid.uuid4().hex[:6]}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"worker exited early; log:\n{self.log_path.read_text()[-3000:]}"
                )
            if "ready." in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"worker not ready in {timeout}s; log:\n{self.log_path.read_text()[-3000:]}"
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None
