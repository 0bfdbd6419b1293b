"""The Procfile as written (`honcho start`: web on $PORT, worker, beat) on the real PostgreSQL and
Redis: a backup started over HTTP completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from cloudbackup.store import migrate
from factories.api import agent_body, configuration_body
from factories.services import REDIS_URL, fresh_postgres_database, require_services
from factories.trees import make_tree

pytestmark = [pytest.mark.slow, pytest.mark.services]

ROOT = Path(__file__).resolve().parents[2]


def test_honcho_runs_the_procfile_on_real_servers(tmp_path):
    require_services()
    with fresh_postgres_database() as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDBACKUP_")}
        port = 20000 + os.getpid() % 20000
        env.update(
            PORT=str(port),
            PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            CLOUDBACKUP_DATABASE_URL=url,
            CLOUDBACKUP_BROKER_URL=REDIS_URL,
            CLOUDBACKUP_BACKUP_QUEUE=f"backups-procfile-{uuid.uuid4().hex[:8]}",
            CLOUDBACKUP_DATA_DIR=str(tmp_path / "data"),
        )
        (tmp_path / "data").mkdir()
        migrate.upgrade(url)
        token = (
            subprocess.run(
                [sys.executable, "-m", "cloudbackup.cli", "token", "create", "--project", "110011"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        log = (tmp_path / "honcho.log").open("wb")
        honcho = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "honcho",
                "start",
                "-f",
                str(ROOT / "Procfile"),
                "-d",
                str(ROOT),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}/v2/110011"
        hdrs = {"X-Auth-Token": token}
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/backups", headers=hdrs, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert honcho.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "honcho.log"
                ).read_text()
                time.sleep(0.3)
            tree = make_tree(tmp_path / "src", files=10, with_excluded=False)
            agent = httpx.post(f"{base}/agents", json=agent_body(), headers=hdrs).json()
            config = httpx.post(
                f"{base}/configurations",
                json=configuration_body(agent["id"], [f"{tree.root}/"]),
                headers=hdrs,
            ).json()
            started = httpx.post(
                f"{base}/backups",
                json={"configuration_id": config["id"], "state": "start_requested"},
                headers=hdrs,
            )
            assert started.status_code == 201, started.text
            deadline = time.monotonic() + 60
            while (body := httpx.get(started.headers["location"], headers=hdrs).json())[
                "state"
            ] != "completed":
                assert time.monotonic() < deadline, body
                time.sleep(0.2)
            assert body["files_searched"] == tree.files
            text = (tmp_path / "honcho.log").read_text()
            assert "beat: Starting" in text  # the beat line runs as written too
        finally:
            os.killpg(honcho.pid, signal.SIGINT)
            try:
                honcho.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(honcho.pid, signal.SIGKILL)
                honcho.wait()
