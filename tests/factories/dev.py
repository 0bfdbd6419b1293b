"""`cloudbackup dev` as a user starts it, for the end-to-end tests: in a folder of its own, on a
free port, stopped (Ctrl-C, then a kill) whatever the test does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def dev_server(cwd: Path, env: dict[str, str], log_path: Path) -> Iterator[int]:
    """Start `cloudbackup dev` in ``cwd``; yields its port once the API answers."""
    port = free_port()
    with log_path.open("wb") as log:
        dev = subprocess.Popen(
            [sys.executable, "-m", "cloudbackup.cli", "dev", "--port", str(port)],
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert dev.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.3)
            yield port
        finally:
            os.killpg(dev.pid, signal.SIGINT)
            try:
                dev.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(dev.pid, signal.SIGKILL)
                dev.wait()
