"""The Procfile as written (`honcho start`: web on $PORT, worker, beat) on the real PostgreSQL and
Redis: a backup started over HTTP completes, and, started in an empty folder (no data folder
prepared, as every deployment on PostgreSQL is), beat's sweeper re-drives a backup whose worker
process was killed in the middle of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloudbackup.store import migrate
from factories.api import agent_body, configuration_body
from factories.services import REDIS_URL, fresh_postgres_database, require_services
from factories.trees import make_tree

pytestmark = [pytest.mark.slow, pytest.mark.services]

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Procfile:
    base: str
    database_url: str
    headers: dict[str, str]
    log: Path
    honcho: subprocess.Popen[bytes]

    def text(self) -> str:
        return self.log.read_text()

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.base}{path}", json=body, headers=self.headers)

    def poll(
        self, url: str, done: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not done(body := httpx.get(url, headers=self.headers).json()):
            assert time.monotonic() < deadline, (body, self.text()[-4000:])
            time.sleep(0.2)
        return body

    def backup_of(self, root: Path) -> httpx.Response:
        agent = self.post("/agents", agent_body()).json()
        config = self.post("/configurations", configuration_body(agent["id"], [f"{root}/"]))
        return self.post(
            "/backups", {"configuration_id": config.json()["id"], "state": "start_requested"}
        )


@contextmanager
def procfile(cwd: Path, **extra_env: str) -> Iterator[Procfile]:
    """`honcho start` of the repository's Procfile with `cwd` as its working folder."""
    require_services()
    cwd.mkdir(parents=True, exist_ok=True)
    with fresh_postgres_database() as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDBACKUP_")}
        port = 20000 + (os.getpid() + len(extra_env)) % 20000
        env.update(
            PORT=str(port),
            PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            CLOUDBACKUP_DATABASE_URL=url,
            CLOUDBACKUP_BROKER_URL=REDIS_URL,
            CLOUDBACKUP_BACKUP_QUEUE=f"backups-procfile-{uuid.uuid4().hex[:8]}",
        )
        env.update(extra_env)  # a test's own broker, too
        # The test's folder (the trees it backs up are beside `cwd`): without roots nothing is.
        env.setdefault("CLOUDBACKUP_ALLOWED_ROOTS", str(cwd.parent))
        migrate.upgrade(url)
        token = (
            subprocess.run(
                [sys.executable, "-m", "cloudbackup.cli", "token", "create", "--project", "110011"],
                env=env,
                cwd=cwd,
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        log_path = cwd.parent / f"{cwd.name}-honcho.log"
        with log_path.open("wb") as log:
            honcho = subprocess.Popen(
                [sys.executable, "-m", "honcho", "start", "-f", str(ROOT / "Procfile"), "-d", "."],
                env=env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        stack = Procfile(
            f"http://127.0.0.1:{port}/v2/110011", url, {"X-Auth-Token": token}, log_path, honcho
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(
                        f"{stack.base}/backups", headers=stack.headers, timeout=1
                    ).is_success:
                        break
                except httpx.HTTPError:
                    pass
                assert honcho.poll() is None and time.monotonic() < deadline, stack.text()
                time.sleep(0.3)
            yield stack
        finally:
            os.killpg(honcho.pid, signal.SIGINT)
            try:
                honcho.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(honcho.pid, signal.SIGKILL)
                honcho.wait()


def test_honcho_runs_the_procfile_on_real_servers(tmp_path):
    tree = make_tree(tmp_path / "src", files=10, with_excluded=False)
    with procfile(tmp_path / "app", CLOUDBACKUP_DATA_DIR=str(tmp_path / "data")) as stack:
        started = stack.backup_of(tree.root)
        assert started.status_code == 201, started.text
        body = stack.poll(started.headers["location"], lambda b: b["state"] == "completed", 60)
        assert body["files_searched"] == tree.files
        assert "beat: Starting" in stack.text()  # the beat line runs as written too


def _pool_processes(honcho_pid: int) -> list[int]:
    """Celery's pool children: `celery ... worker` processes below honcho whose parent is one too."""

    def argv(pid: int) -> list[str]:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            return []

    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        try:
            parents[int(entry.name)] = int(
                (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            )
        except (OSError, IndexError, ValueError):
            continue
    below, grew = {honcho_pid}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in below} - below
        below |= more
        grew = bool(more)
    workers = {
        pid for pid in below if "worker" in argv(pid) and "cloudbackup.workers.app" in argv(pid)
    }
    return sorted(pid for pid in workers if parents.get(pid) in workers)


def test_beat_in_an_empty_folder_redrives_a_backup_whose_worker_was_killed(tmp_path):
    # 24 MiB read at 4 MiB/s: about 6 s of work, long enough to kill the worker in the middle.
    tree = make_tree(
        tmp_path / "src", files=10, big_files=3, big_size=8 * 1024 * 1024, with_excluded=False
    )
    empty = tmp_path / "empty"
    fast_sweeps = {
        "CLOUDBACKUP_BACKUP_MAX_BPS": str(4 * 1024 * 1024),
        "CLOUDBACKUP_PROGRESS_INTERVAL": "0.2",
        "CLOUDBACKUP_HEARTBEAT_TIMEOUT_SECONDS": "3",
        "CLOUDBACKUP_SWEEP_AFTER_SECONDS": "3",
    }
    with procfile(empty, **fast_sweeps) as stack:
        started = stack.backup_of(tree.root)
        assert started.status_code == 201, started.text
        url = started.headers["location"]
        stack.poll(url, lambda b: b["state"] == "in_progress" and b["bytes_backed_up"] > 0, 60)
        pool = _pool_processes(stack.honcho.pid)
        assert pool, stack.text()
        for pid in pool:  # the running backup dies with its process; the worker forks new ones
            os.kill(pid, signal.SIGKILL)
        assert httpx.get(url, headers=stack.headers).json()["state"] == "in_progress"

        body = stack.poll(url, lambda b: b["state"] not in ("queued", "in_progress"), 120)
        text = stack.text()

    assert body["state"] == "completed", text[-4000:]
    assert body["files_searched"] == tree.files
    assert "FileNotFoundError" not in text
    assert "beat: Starting" in text
    assert (empty / ".cloudbackup" / "celerybeat-schedule.dat").exists()


def test_an_admins_first_hour_schedules_fire_mail_arrives_retention_prunes(tmp_path):
    """The Procfile in an empty folder on PostgreSQL, with mail configured: a scheduled backup
    fires on its own, its failure mail reaches a real SMTP server, and once the backup is past
    its retention the retention pass has it forgotten and pruned."""
    from datetime import UTC, datetime, timedelta

    import psycopg

    from factories.mail import smtp_server

    tree = make_tree(tmp_path / "src", files=10, with_excluded=False)
    with smtp_server(tmp_path) as mail:
        env = {
            "CLOUDBACKUP_SMTP_URL": mail.url,
            "CLOUDBACKUP_MAIL_FROM": "backups@example.com",
            "CLOUDBACKUP_NOTIFY_INTERVAL_SECONDS": "1",
            "CLOUDBACKUP_RETENTION_INTERVAL_SECONDS": "2",
            "CLOUDBACKUP_SCHEDULE_TICK_SECONDS": "1",
            "CLOUDBACKUP_ALLOWED_ROOTS": str(tmp_path),
        }
        with procfile(tmp_path / "empty", **env) as stack:
            agent = stack.post("/agents", agent_body()).json()
            fire_at = datetime.now(UTC) + timedelta(minutes=1)
            body = configuration_body(
                agent["id"],
                [f"{tree.root}/", f"{tmp_path}/never-there/"],  # the second: a per-file error
                name="nightly",
                retention={"days": 1},
                schedule={
                    "recurrence": [f"RRULE:FREQ=HOURLY;BYMINUTE={fire_at.minute}"],
                    "time_zone": "UTC",
                },
                notifications=[
                    {
                        "type": "email",
                        "destination": "ops@example.com",
                        "on_success": False,
                        "on_failure": True,
                    }
                ],
            )
            config = stack.post("/configurations", body)
            assert config.status_code == 201, config.text
            listing = f"{stack.base}/backups?configuration_id={config.json()['id']}"

            def fired(page: dict[str, Any]) -> bool:
                return any(b["state"] == "completed_with_errors" for b in page["backups"])

            page = stack.poll(listing, fired, 180)
            backup = page["backups"][0]

            deadline = time.monotonic() + 60
            while not mail.messages():
                assert time.monotonic() < deadline, stack.text()[-4000:]
                time.sleep(0.5)
            (message,) = mail.messages()
            assert message["To"] == "ops@example.com"
            assert message["Subject"] == f"Backup completed with errors: nightly on {agent['name']}"

            # Two days later (the backup's end moved back), the retention pass prunes it.
            with psycopg.connect(stack.database_url, autocommit=True) as conn:
                conn.execute(
                    "UPDATE backups SET ended_time = ended_time - interval '2 days' WHERE id = %s",
                    (backup["id"],),
                )
            stack.poll(
                f"{stack.base}/backups/{backup['id']}", lambda b: b["restorable"] is False, 60
            )
            text = stack.text()
    assert "retention started 1 cleanups" in text


def test_backups_accepted_while_redis_is_down_run_once_it_is_back(tmp_path):
    """The Procfile in an empty folder on PostgreSQL, on a Redis of its own: while Redis is
    down every POST is a 201, and once Redis is back (empty: the messages are lost) beat's
    sweeper re-publishes them and each backup runs once (issue 13 item 4: 10 of 10 never ran
    while beat could not start)."""
    from concurrent.futures import ThreadPoolExecutor

    from factories.private_services import private_redis

    tree = make_tree(tmp_path / "src", files=5, with_excluded=False)
    env = {
        "CLOUDBACKUP_SWEEP_AFTER_SECONDS": "3",
        "CLOUDBACKUP_BROKER_PUBLISH_TIMEOUT": "1",
        "CLOUDBACKUP_MAX_RUNNING_PER_AGENT": "0",
    }
    with (
        private_redis() as redis_server,
        procfile(tmp_path / "empty", CLOUDBACKUP_BROKER_URL=redis_server.url, **env) as stack,
    ):
        agent = stack.post("/agents", agent_body()).json()
        configs = [
            stack.post(
                "/configurations",
                configuration_body(agent["id"], [f"{tree.root}/"], name=f"config {n}"),
            ).json()["id"]
            for n in range(10)
        ]
        redis_server.stop()

        def start(config_id: str) -> httpx.Response:
            body = {"configuration_id": config_id, "state": "start_requested"}
            return stack.post("/backups", body)

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(start, configs))
        assert [a.status_code for a in answers] == [201] * 10, [a.text for a in answers]
        urls = [a.headers["location"] for a in answers]
        time.sleep(2)  # worker and beat see the outage
        redis_server.start()  # same port, empty

        finals = [stack.poll(url, lambda b: b["state"] in FINAL, 150) for url in urls]
        events = [
            httpx.get(f"{url}/events", headers=stack.headers).json()["events"] for url in urls
        ]
        text = stack.text()

    assert [b["state"] for b in finals] == ["completed"] * 10, text[-4000:]
    assert all(b["files_searched"] == tree.files for b in finals)
    for listed in events:
        kinds = [e["event"] for e in listed]
        assert kinds.count("backup_queued") == 1, kinds  # claimed once
        assert kinds.count("backup_completed") == 1, kinds  # ran once
    assert "FileNotFoundError" not in text
    assert (tmp_path / "empty" / ".cloudbackup" / "celerybeat-schedule.dat").exists()


FINAL = {"completed", "completed_with_errors", "failed", "stopped", "skipped", "missed"}
