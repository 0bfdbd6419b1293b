"""Benchmark: the same tree backed up and restored by a hosted worker and by a remote agent
(``cloudbackup agent run``, storing through the API), in one run, on the real stack.

What it measures, each from the API call to the run's final state (B3 polled every 50 ms):
a first backup, an unchanged re-run, and a restore of the first snapshot to a new folder, for

* **hosted**: a Celery worker reading the tree and writing the vault folder itself;
* **remote**: ``cloudbackup agent run`` as a separate process with no server setting, reading
  the tree, sealing on its side and storing every object through the vault-object API.

It prints the times and the ratios remote/hosted with the issue's targets (first backup <= 1.3x,
re-run <= 1.5x, restore <= 1.3x). One fresh PostgreSQL database (``cloudbackup_bench_<random>``),
one Redis queue and temp folders are used and removed at the end, also on errors and Ctrl-C.

Run (PostgreSQL and Redis on 127.0.0.1)::

    .venv/bin/python bench/remote_agent.py [--files 2000] [--size-mb 256] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import psycopg

PROJECT = "110011"
FINAL = {"completed", "completed_with_errors", "failed", "stopped"}
TARGETS = {"first backup": 1.3, "unchanged re-run": 1.5, "restore": 1.3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_tree(root: Path, files: int, size_mb: int) -> tuple[int, int]:
    """``files`` pseudo-random files, half compressible, ``size_mb`` in all."""
    rng = random.Random(11)
    each = size_mb * 1024 * 1024 // files
    total = 0
    for i in range(files):
        folder = root / f"d{i % 20}" / f"s{i % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(each // 2, each * 3 // 2)
        data = rng.randbytes(size) if i % 2 else (b"%08d text line\n" % i) * (size // 18 + 1)
        (folder / f"f{i}.bin").write_bytes(data[:size])
        total += size
    return files, total


@contextmanager
def database(admin_url: str) -> Iterator[str]:
    name = f"cloudbackup_bench_{secrets.token_hex(5)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        with _quiet():
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with _quiet():
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _quiet() -> suppress[ProcessLookupError]:
    return suppress(ProcessLookupError)


def cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cloudbackup.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else ""


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.http = httpx.Client(base_url=f"{base}/v2/{PROJECT}", headers={"X-Auth-Token": token})

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.http.post(path, json=body)
        assert answer.is_success, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def timed(self, path: str, body: dict[str, Any], plural: str) -> tuple[float, dict[str, Any]]:
        """Seconds from the start request to the final state, and the final run."""
        started = time.perf_counter()
        run_id = self.post(path, body)["id"]
        while (run := self.http.get(f"/{plural}/{run_id}").json())["state"] not in FINAL:
            time.sleep(0.05)
        return time.perf_counter() - started, run


def measure(api: Api, agent_id: str, tree: Path, out: Path) -> dict[str, float]:
    config = api.post(
        "/configurations",
        {
            "agent_id": agent_id,
            "name": f"bench-{agent_id[:8]}",
            "enabled": True,
            "schedule": None,
            "retention": {"days": 30},
            "inclusions": [{"type": "folder", "path": f"{tree}/"}],
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
    )
    start = {"configuration_id": config["id"], "state": "start_requested"}
    times: dict[str, float] = {}
    times["first backup"], first = api.timed("/backups", start, "backups")
    assert first["state"] == "completed", first
    times["unchanged re-run"], again = api.timed("/backups", start, "backups")
    assert again["state"] == "completed", again
    restore = {
        "backup_id": first["id"],
        "destination_agent_id": agent_id,
        "destination_path": str(out),
        "overwrite_files": False,
        "encrypted_password_hex": None,
        "inclusions": [],
        "exclusions": [],
    }
    times["restore"], restored = api.timed("/restores", restore, "restores")
    assert restored["state"] == "completed", restored
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-remote-")))
        stack.callback(shutil.rmtree, work, True)
        files, size = make_tree(work / "tree", args.files, args.size_mb)
        url = stack.enter_context(database(args.pg_admin_url))
        port = free_port()
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDBACKUP_")}
        base_env["PATH"] = f"{Path(sys.executable).parent}:{base_env.get('PATH', '')}"
        server = {
            **base_env,
            "CLOUDBACKUP_DATABASE_URL": url,
            "CLOUDBACKUP_BROKER_URL": args.redis_url,
            "CLOUDBACKUP_DATA_DIR": str(work / "data"),
            "CLOUDBACKUP_BACKUP_QUEUE": f"bench-remote-{secrets.token_hex(4)}",
            # Every agent's runs may touch the bench's own folders (tree and restores) only.
            "CLOUDBACKUP_ALLOWED_ROOTS": str(work),
        }
        cli("db", "upgrade", env=server)
        token = cli("token", "create", "--project", PROJECT, env=server)
        log = work / "stack.log"
        web = ["cloudbackup", "web", "--host", "127.0.0.1", "--port", str(port)]
        worker = [sys.executable, "-m", "celery", "-A", "cloudbackup.workers.app", "worker"]
        stack.enter_context(process(web, server, log))
        stack.enter_context(process([*worker, "--concurrency", "2"], server, log))
        api_base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{api_base}/v2/{PROJECT}/ping", timeout=1).status_code == 204:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        api = Api(api_base, token)
        hosted_agent = api.post(
            "/agents",
            {
                "name": "hosted",
                "version": "bench",
                "host": {
                    "flavor": "nova",
                    "region": None,
                    "machine": {"id": secrets.token_hex(8)},
                    "os": {"name": "Linux", "version": "1", "architecture": "64-bit"},
                    "fingerprint": secrets.token_hex(8),
                    "addresses": [],
                },
                "rsa_public_key": {"modulus": "c4f1", "exponent": 10001},
            },
        )["id"]
        state = work / "agent-state"
        remote_agent = cli(
            "agent", "register", "--url", api_base, "--project", PROJECT, "--token", token,
            "--name", "remote", "--state-dir", str(state), env=base_env,
        )  # fmt: skip
        agent_log = work / "agent.log"
        agent_run = [sys.executable, "-m", "cloudbackup.cli", "agent", "run"]
        stack.enter_context(process([*agent_run, "--state-dir", str(state)], base_env, agent_log))
        while " ready" not in (agent_log.read_text() if agent_log.exists() else ""):
            time.sleep(0.2)
        hosted = measure(api, hosted_agent, work / "tree", work / "out-hosted")
        remote = measure(api, remote_agent, work / "tree", work / "out-remote")
    print(f"tree: {files} files, {size / 2**20:.0f} MiB")
    print(f"{'run':<18} {'hosted s':>9} {'remote s':>9} {'ratio':>6} {'target':>7}")
    verdicts = {}
    for name, target in TARGETS.items():
        ratio = remote[name] / hosted[name]
        verdicts[name] = ratio <= target
        print(
            f"{name:<18} {hosted[name]:>9.2f} {remote[name]:>9.2f} {ratio:>5.2f}x "
            f"{'<=' + str(target) + 'x':>7} {'ok' if verdicts[name] else 'MISSED'}"
        )
    if args.json:
        args.json.write_text(json.dumps({"hosted": hosted, "remote": remote, "ok": verdicts}))


if __name__ == "__main__":
    main()
