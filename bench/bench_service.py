"""The service as the README's multi-process deployment runs it, for benchmarks.

The Procfile's ``web`` and ``worker`` lines, run as written (``sh -c``), on a fresh database of
the machine's PostgreSQL and on its Redis (a queue of our own), with one worker process
(``CLOUDBACKUP_WORKER_CONCURRENCY=1``); beat is left out (nothing here is scheduled). Timings
are taken from the client's side: from just before the POST to the first GET that shows a
final state.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "110011"
FINAL = {"completed", "completed_with_errors", "failed", "stopped", "skipped", "missed"}
# Every GET costs the API (and PostgreSQL) CPU that the worker would otherwise have: 20 ms cost
# about 15% of a core here, 100 ms about 3%, at a resolution of 0.1 s.
POLL_SECONDS = 0.1


@dataclass
class Timed:
    """One run seen through the API: seconds from the POST to each state first seen."""

    seconds: float
    state: str
    body: dict[str, Any]
    seen: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    api_cpu_seconds: float = 0.0  # CPU the API process used meanwhile (mostly the GETs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def procfile_lines() -> dict[str, str]:
    lines = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if command.strip():
            lines[name.strip()] = command.strip()
    return lines


def _session_processes(sid: int) -> list[tuple[int, int, list[str]]]:
    """(pid, parent pid, argv) of every process of session ``sid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if int(fields[3]) == sid:
            found.append((int(entry.name), int(fields[1]), argv))
    return found


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _vm_hwm_mb(pid: int, field: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Service:
    """API + one worker; the client calls of the benchmark's steps."""

    def __init__(self, work: Path, pg_admin_url: str, redis_url: str) -> None:
        self.work = work
        self.pg_admin_url = pg_admin_url
        self.database = f"cloudbackup_bench_{secrets.token_hex(5)}"
        self.queue = f"cloudbackup-bench-{secrets.token_hex(4)}"
        self.redis_url = redis_url
        self.vaults = work / "service-vaults"
        self.port = _free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.base = f"http://127.0.0.1:{self.port}/v2/{PROJECT}"
        self.http = httpx.Client(timeout=30)
        self.headers: dict[str, str] = {}
        self.idle_rss_mb = 0.0  # the worker's RSS before the step

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDBACKUP_")}
        url = f"{self.pg_admin_url.rsplit('/', 1)[0]}/{self.database}"
        env.update(
            PORT=str(self.port),
            PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            CLOUDBACKUP_DATABASE_URL=url,
            CLOUDBACKUP_BROKER_URL=self.redis_url,
            CLOUDBACKUP_BACKUP_QUEUE=self.queue,
            CLOUDBACKUP_DATA_DIR=str(self.work / "service-data"),
            CLOUDBACKUP_VAULT_PATH=str(self.vaults),
            CLOUDBACKUP_WORKER_CONCURRENCY="1",
            # The generated trees live in the work folder: the agents may read it.
            CLOUDBACKUP_ALLOWED_ROOTS=str(self.work),
        )
        return env

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "cloudbackup.cli", *args],
            env=self.env(),
            cwd=self.work,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"cloudbackup {' '.join(args)}: {done.stderr[-2000:]}")
        return done.stdout

    def start(self) -> None:
        with psycopg.connect(self.pg_admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        self._run("db", "upgrade")
        token = self._run("token", "create", "--project", PROJECT, "--role", "admin")
        self.headers = {"X-Auth-Token": token.strip().splitlines()[-1]}
        lines = procfile_lines()
        for name in ("web", "worker"):
            log = (self.work / f"service-{name}.log").open("wb")
            self.processes[name] = subprocess.Popen(
                ["sh", "-c", lines[name]],
                env=self.env(),
                cwd=self.work,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while not (self._api_answers() and self._worker_ready()):
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"service not up in 90 s:\n{self.log_tail('worker')}")
            time.sleep(0.2)

    def log_tail(self, name: str, n: int = 3000) -> str:
        return (self.work / f"service-{name}.log").read_text(errors="replace")[-n:]

    def _api_answers(self) -> bool:
        try:
            return self.http.get(f"{self.base}/backups", headers=self.headers).is_success
        except httpx.HTTPError:
            return False

    def _worker_ready(self) -> bool:
        return "ready." in self.log_tail("worker", 100_000)

    def worker_pool(self) -> list[int]:
        """The worker's pool processes (celery workers whose parent is a celery worker)."""
        procs = _session_processes(self.processes["worker"].pid)
        celery = {p for p, _, argv in procs if "worker" in argv and "celery" in " ".join(argv)}
        return [p for p, parent, _ in procs if p in celery and parent in celery]

    def reset_peak_rss(self) -> None:
        self.idle_rss_mb = max((_vm_hwm_mb(p, "VmRSS") for p in self.worker_pool()), default=0.0)
        for pid in self.worker_pool():
            # Writing 5 resets the process's peak RSS (VmHWM), Linux 4.0+.
            Path(f"/proc/{pid}/clear_refs").write_text("5")

    def peak_rss_mb(self) -> float:
        return max((_vm_hwm_mb(pid) for pid in self.worker_pool()), default=0.0)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.http.close()
        with psycopg.connect(self.pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        try:
            import redis

            redis.Redis.from_url(self.redis_url).delete(
                self.queue, f"{self.queue}.scheduled", f"{self.queue}.maintenance"
            )
        except Exception as exc:
            print(f"redis cleanup: {exc}", file=sys.stderr)

    # -- the client's side ----------------------------------------------------------------------

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        response = self.http.post(f"{self.base}{path}", json=body, headers=self.headers)
        if response.status_code != 201:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:500]}")
        return response

    def configuration_for(self, folder: Path) -> tuple[str, str]:
        """A new agent (so a new vault) and a configuration of ``folder``; (agent, config)."""
        agent = self.post(
            "/agents",
            {
                "name": f"bench-{uuid.uuid4().hex[:6]}",
                "version": "1.0",
                "host": {
                    "flavor": "nova",
                    "region": None,
                    "machine": {"id": str(uuid.uuid4())},
                    "os": {"name": "Debian", "version": "12", "architecture": "64-bit"},
                    "fingerprint": uuid.uuid4().hex,
                    "addresses": [{"version": 4, "addr": "127.0.0.1"}],
                },
                "rsa_public_key": {"modulus": "c4f1a2b3", "exponent": 10001},
            },
        ).json()["id"]
        config = self.post(
            "/configurations",
            {
                "agent_id": agent,
                "name": f"bench {folder.name}",
                "enabled": True,
                "schedule": None,
                "retention": {"days": 30},
                "inclusions": [{"type": "folder", "path": f"{folder}/"}],
                "exclusions": [],
                "notifications": [
                    {
                        "type": "email",
                        "destination": "bench@example.com",
                        "on_success": False,
                        "on_failure": True,
                    }
                ],
            },
        ).json()["id"]
        return agent, config

    def api_cpu_seconds(self) -> float:
        """CPU seconds of the API's processes so far."""
        procs = _session_processes(self.processes["web"].pid)
        return sum(_cpu_seconds(pid) for pid, _, argv in procs if "web" in argv)

    def _until_final(self, url: str, began: float) -> Timed:
        seen: dict[str, float] = {}
        api_cpu = self.api_cpu_seconds()
        while True:
            body = self.http.get(url, headers=self.headers).json()
            now = time.monotonic() - began
            seen.setdefault(body["state"], now)
            if body["state"] in FINAL:
                api = self.api_cpu_seconds() - api_cpu
                return Timed(now, body["state"], body, seen, self.peak_rss_mb(), api)
            if now > 3600:
                raise RuntimeError(f"{url} not final after an hour: {body}")
            time.sleep(POLL_SECONDS)

    def backup(self, config: str) -> Timed:
        """B1, then B3 until a final state."""
        self.reset_peak_rss()
        began = time.monotonic()
        started = self.post("/backups", {"configuration_id": config, "state": "start_requested"})
        return self._until_final(started.headers["location"], began)

    def restore(self, backup_id: str, agent: str, destination: Path) -> Timed:
        """R1 of the whole backup to ``destination``, then R2 until a final state."""
        self.reset_peak_rss()
        began = time.monotonic()
        started = self.post(
            "/restores",
            {
                "backup_id": backup_id,
                "destination_agent_id": agent,
                "destination_path": str(destination),
                "overwrite_files": False,
                "encrypted_password_hex": None,
                "inclusions": [],
                "exclusions": [],
            },
        )
        restore_id = started.json()["id"]
        return self._until_final(f"{self.base}/restores/{restore_id}", began)


@contextmanager
def running_service(work: Path, pg_admin_url: str, redis_url: str) -> Iterator[Service]:
    service = Service(work, pg_admin_url, redis_url)
    try:
        service.start()
        yield service
    finally:
        service.stop()
