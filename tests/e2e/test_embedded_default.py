"""The README's first command on a fresh data folder: `cloudbackup dev` (SQLite, embedded Redis,
API, worker, beat), then a user's whole journey over HTTP and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from factories.api import agent_body, configuration_body
from factories.dev import dev_server
from factories.trees import digests, make_tree

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDBACKUP_")}
    env["CLOUDBACKUP_DATA_DIR"] = str(data_dir)
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cloudbackup.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dev_runs_a_backup_and_restore_end_to_end(tmp_path):
    data_dir = tmp_path / "data"
    env = _env(data_dir)
    with dev_server(tmp_path, env, tmp_path / "dev.log") as port:
        base = f"http://127.0.0.1:{port}"
        created = _cli(env, "token", "create", "--project", "110011", "--role", "admin")
        assert created.returncode == 0, created.stderr
        secret = created.stdout.strip().splitlines()[-1]
        hdrs = {"X-Auth-Token": secret}
        # A second terminal on the same folder finds dev's embedded broker without any setting.
        queues = _cli(env, "queues")
        assert queues.returncode == 0, queues.stdout + queues.stderr
        assert "backups" in queues.stdout and "BROKER_URL is not set" not in queues.stderr
        assert "broker: redis://127.0.0.1:" in (tmp_path / "dev.log").read_text()

        tree = make_tree(tmp_path / "src", files=25, size=30_000)
        agent = httpx.post(f"{base}/v2/110011/agents", json=agent_body(), headers=hdrs)
        assert agent.status_code == 201, agent.text
        config_body = configuration_body(agent.json()["id"], [f"{tree.root}/"])
        config_body["exclusions"] = [{"type": "folder", "path": f"{tree.root}/cache/"}]
        config = httpx.post(f"{base}/v2/110011/configurations", json=config_body, headers=hdrs)
        assert config.status_code == 201, config.text

        started = httpx.post(
            f"{base}/v2/110011/backups",
            json={"configuration_id": config.json()["id"], "state": "start_requested"},
            headers=hdrs,
        )
        assert started.status_code == 201, started.text
        url = started.headers["location"]
        deadline = time.monotonic() + 60
        while (body := httpx.get(url, headers=hdrs).json())["state"] not in (
            "completed",
            "completed_with_errors",
            "failed",
        ):
            assert time.monotonic() < deadline, body
            time.sleep(0.2)
        assert body["state"] == "completed", body
        assert (body["files_searched"], body["bytes_searched"]) == (tree.files, tree.bytes)

        restored = _cli(env, "restore", body["id"], "--to", str(tmp_path / "out"))
        assert restored.returncode == 0, restored.stderr
        expected = {k: v for k, v in digests(tree.root).items() if not k.startswith("cache")}
        assert digests(tmp_path / "out" / str(tree.root).lstrip("/")) == expected
    assert (data_dir / "cloudbackup.db").exists()
    assert not (data_dir / "dev-broker-url").exists()  # dev removes its broker's address
