"""A remote agent against the real stack (the Procfile: API, Celery worker and beat on the
machine's PostgreSQL and Redis), run as separate processes whose environment holds no
CLOUDBACKUP_* setting: it registers, backs up with true counters, restores byte-identical to
another folder, re-runs storing about nothing, stops within 2 s, survives a kill -9 mid-backup
(re-driven with a new attempt, which stores little again: checkpoints), and its token is refused
on another agent's runs, vault objects and channel. Then the boundary: the agent in its own network namespace, where PostgreSQL and Redis are unreachable."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_procfile import Procfile, procfile

from factories.api import configuration_body, restore_body
from factories.trees import Tree, make_tree

pytestmark = [pytest.mark.slow, pytest.mark.services]

FAST_SWEEPS = {
    "CLOUDBACKUP_PROGRESS_INTERVAL": "0.2",
    "CLOUDBACKUP_HEARTBEAT_TIMEOUT_SECONDS": "3",
    "CLOUDBACKUP_SWEEP_AFTER_SECONDS": "3",
    # Reaches the agent in its work items: a kill loses at most this much of storing.
    "CLOUDBACKUP_BACKUP_CHECKPOINT_SECONDS": "0.25",
}
FINAL = {"completed", "completed_with_errors", "failed", "stopped"}
PATCH = {"Content-Type": "application/json-patch+json"}
HOST_ADDR, AGENT_ADDR = "10.231.0.1", "10.231.0.2"


# The `cloudbackup` command of this test run's own install.
THIS_INSTALL = (sys.executable, "-m", "cloudbackup.cli")


def agent_env(bin_dir: Path | None = None) -> dict[str, str]:
    """The agent host's environment: nothing of the server's settings; ``bin_dir`` (default
    this interpreter's) first on PATH, and for another install no PYTHONPATH of this one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDBACKUP_")}
    if bin_dir is not None and bin_dir != Path(sys.executable).parent:
        env.pop("PYTHONPATH", None)
    env["PATH"] = f"{bin_dir or Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


class HostAgent:
    """`cloudbackup agent register|run` as processes (inside ``netns`` when given), run by
    ``program`` (this install's by default; tests/e2e/test_agent_install.py passes the
    `cloudbackup` of an agent-only venv)."""

    def __init__(
        self,
        state_dir: Path,
        log: Path,
        netns: str | None = None,
        program: Sequence[str] = THIS_INSTALL,
    ) -> None:
        self.state_dir = state_dir
        self.log = log
        self.prefix = ["ip", "netns", "exec", netns] if netns else []
        self.program = list(program)
        self.env = agent_env(Path(self.program[0]).parent)
        self.process: subprocess.Popen[bytes] | None = None

    def command(self, *args: str) -> list[str]:
        return [*self.prefix, *self.program, "agent", *args]

    def register(self, url: str, token: str, name: str) -> str:
        done = subprocess.run(
            self.command(
                "register",
                *("--url", url, "--project", "110011", "--token", token, "--name", name),
                *("--state-dir", str(self.state_dir)),
            ),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def start(self, *extra: str) -> None:
        assert not any(k.startswith("CLOUDBACKUP_") for k in self.env)
        start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command("run", "--state-dir", str(self.state_dir), *extra),
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while " ready" not in self.log.read_bytes()[start:].decode(errors="replace"):
            assert self.process.poll() is None, self.text()
            assert time.monotonic() < deadline, self.text()
            time.sleep(0.2)

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def text(self) -> str:
        """The log's tail, for assertion messages."""
        return self.whole_text()[-6000:]

    def whole_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def token(self, base: str) -> str:
        """A9 as this agent (what its process does), for the tests' own requests."""
        me = json.loads((self.state_dir / "agent.json").read_text())
        body = {
            "project_id": me["project_id"],
            "id": me["agent_id"],
            "password": me["password"],
            "name": me["name"],
            "version": me["version"],
            "host": {"os": me["os"], "fingerprint": me["fingerprint"], "addresses": []},
        }
        answer = httpx.post(f"{base}/agents/tokens", json=body)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["token"]["id"])


@contextmanager
def running_agents(
    stack: Procfile, folder: Path, *names: str
) -> Iterator[list[tuple[HostAgent, str]]]:
    """Agents registered with the stack and serving it, each with its own state folder and
    log under ``folder``: (agent, id) in the order of ``names``; stopped on the way out."""
    api = stack.base.removesuffix("/v2/110011")
    started: list[tuple[HostAgent, str]] = []
    try:
        for name in names:
            agent = HostAgent(folder / f"state-{name}", folder / f"{name}.log")
            started.append((agent, agent.register(api, stack.headers["X-Auth-Token"], name)))
            agent.start()
        yield started
    finally:
        for agent, _ in started:
            agent.stop()


def configure(stack: Procfile, agent_id: str, tree: Tree) -> str:
    config = stack.post("/configurations", configuration_body(agent_id, [f"{tree.root}/"]))
    assert config.status_code == 201, config.text
    return str(config.json()["id"])


def backup(stack: Procfile, config_id: str) -> str:
    started = stack.post("/backups", {"configuration_id": config_id, "state": "start_requested"})
    assert started.status_code == 201, started.text
    return str(started.headers["location"])


def final(stack: Procfile, url: str, agent: HostAgent, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (body := httpx.get(url, headers=stack.headers).json())["state"] not in FINAL:
        assert time.monotonic() < deadline, (body, agent.text(), stack.text()[-3000:])
        time.sleep(0.2)
    return body


def vault_bytes(data_dir: Path, stack: Procfile, agent_id: str) -> int:
    vault_id = httpx.get(f"{stack.base}/agents/{agent_id}", headers=stack.headers).json()["vault"][
        "id"
    ]
    folder = data_dir / "vault" / vault_id
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def restore_elsewhere(
    stack: Procfile, agent: HostAgent, agent_id: str, backup_id: str, tree: Tree, target: Path
) -> None:
    """R1 of ``backup_id`` to ``agent_id`` into ``target``: completed, every file byte-identical."""
    restore = stack.post("/restores", restore_body(backup_id, agent_id, str(target)))
    assert restore.status_code == 201, restore.text
    done = final(stack, str(restore.headers["location"]), agent)
    assert (done["state"], done["files_restored"]) == ("completed", tree.files), (
        done,
        agent.text(),
    )
    for path in tree.root.rglob("*"):
        if path.is_file():  # byte-identical, in another folder
            copy = target / str(path).lstrip("/")
            assert copy.read_bytes() == path.read_bytes(), path


def answered(url: str, stack: Procfile, agent: HostAgent, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (response := httpx.get(url, headers=stack.headers)).status_code != 200:
        assert time.monotonic() < deadline, (response.text, agent.text(), stack.text()[-3000:])
        time.sleep(0.2)
    return dict(response.json())


def served_on_the_host(stack: Procfile, agent: HostAgent, agent_id: str, tree: Tree) -> None:
    """A cleanup (C1), a host browse (A10) and a log upload (A12) of the remote agent, through
    the workers and its channel: hosted workers hold neither its vault's password nor its files."""
    cleanup = stack.post("/cleanups", {"agent_id": agent_id, "state": "start_requested"})
    assert cleanup.status_code == 201, cleanup.text
    cleaned = final(stack, str(cleanup.headers["location"]), agent)
    assert cleaned["state"] == "completed", (cleaned, agent.text())
    assert cleaned["snapshot_ids"] == [] and cleaned["bytes_after"] > 0  # nothing expired
    assert f"cleanup {cleaned['id']} (attempt 1) starts" in agent.log.read_text()

    asked = stack.post(
        f"/agents/{agent_id}/browse-requests", {"path": f"{tree.root}/", "path_encoded": None}
    )
    assert asked.status_code == 202, asked.text
    listed = answered(str(asked.headers["location"]), stack, agent)
    assert listed["succeeded"] is True, listed
    names = sorted(p.name for p in tree.root.iterdir())
    assert [item["name"] for item in listed["items"]] == names

    logfile = httpx.post(f"{stack.base}/agents/{agent_id}/logfiles", headers=stack.headers)
    assert logfile.status_code == 202, logfile.text
    url = f"{stack.base}/agents/{agent_id}/logfiles/{logfile.json()['id']}"
    done = stack.poll(url, lambda x: x["state"] == "completed", 60)
    [link] = [link["href"] for link in done["links"] if link["rel"] == "logfile"]
    downloaded = httpx.get(link, headers=stack.headers)
    assert downloaded.status_code == 200, downloaded.text
    assert b"ready" in gzip.decompress(downloaded.content)  # the agent's own log lines


def test_a_remote_agent_backs_up_stops_and_survives_a_kill_over_http_alone(
    tmp_path: Path,
) -> None:
    tree = make_tree(tmp_path / "small", files=60, size=64 * 1024, with_excluded=False)
    # 48 MiB read at 2 MiB/s: about 24 s of work, long enough to stop and then to kill the next
    # run mid-way even on a loaded machine (a stop can take half the tree first).
    big = make_tree(
        tmp_path / "big", files=10, big_files=6, big_size=8 * 1024 * 1024, with_excluded=False
    )
    data = tmp_path / "data"
    a = HostAgent(tmp_path / "agent-a", tmp_path / "agent-a.log")
    b = HostAgent(tmp_path / "agent-b", tmp_path / "agent-b.log")
    with procfile(tmp_path / "app", CLOUDBACKUP_DATA_DIR=str(data), **FAST_SWEEPS) as stack:
        api = stack.base.removesuffix("/v2/110011")
        token = stack.headers["X-Auth-Token"]
        a_id = a.register(api, token, "host-a")
        b_id = b.register(api, token, "host-b")
        assert (
            os.stat(a.state_dir).st_mode & 0o777,
            os.stat(a.state_dir / "private_key.pem").st_mode & 0o777,
        ) == (0o700, 0o600)
        try:
            a.start()
            small = configure(stack, a_id, tree)
            first = final(stack, backup(stack, small), a)
            assert first["state"] == "completed", (first, a.text())
            assert (first["files_searched"], first["bytes_searched"]) == (tree.files, tree.bytes)
            assert (first["files_backed_up"], first["bytes_backed_up"]) == (tree.files, tree.bytes)
            assert first["snapshot_id"] is not None
            stored = vault_bytes(data, stack, a_id)
            assert stored > tree.unique_bytes // 2  # sealed and compressed, but there

            restore_elsewhere(stack, a, a_id, first["id"], tree, tmp_path / "restored")

            second = final(stack, backup(stack, small), a)
            assert second["state"] == "completed", second
            assert second["files_searched"] == tree.files
            growth = vault_bytes(data, stack, a_id) - stored
            assert growth < max(stored // 50, 64 * 1024), (growth, stored)  # about nothing
            served_on_the_host(stack, a, a_id, tree)

            a.stop()
            a.start("--max-bps", str(2 * 1024 * 1024))
            slow = configure(stack, a_id, big)
            before_big = vault_bytes(data, stack, a_id)
            url = backup(stack, slow)
            seen = stack.poll(
                url, lambda x: x["state"] == "in_progress" and x["bytes_backed_up"] > 0, 60
            )
            # The counters of B3 move while it runs (stored batches land every second or two).
            later = stack.poll(url, lambda x: x["bytes_backed_up"] > seen["bytes_backed_up"], 6)
            assert later["bytes_backed_up"] > seen["bytes_backed_up"]  # live counters, each second
            asked = time.monotonic()
            stop = httpx.patch(
                url,
                content=json.dumps(
                    [{"op": "replace", "path": "/state", "value": "stop_requested"}]
                ),
                headers={**stack.headers, **PATCH},
            )
            assert stop.status_code == 204, stop.text
            stopped = final(stack, url, a, timeout=10)
            assert stopped["state"] == "stopped", f"{stopped}\n{a.text()}"
            # Reached the agent within 2 s (its report thread reads B3 back every second), then
            # the engine stopped and the agent reported: well under 4 s.
            assert time.monotonic() - asked < 4.0

            # The next run stores only what the stopped one did not (its checkpoint); killed
            # once the vault holds about half of that (packs land at checkpoints, 4 MiB or more).
            # What is left is measured in the vault (random data: stored about as large as read),
            # which also holds what the stop flushed after the last report.
            at_start = vault_bytes(data, stack, a_id)
            remaining = big.unique_bytes - (at_start - before_big)
            url = backup(stack, slow)
            deadline = time.monotonic() + 60
            while vault_bytes(data, stack, a_id) - at_start < 0.5 * remaining:
                assert time.monotonic() < deadline, (remaining, a.text()[-3000:])
                time.sleep(0.05)
            a.kill9()  # at about half: nobody reports, the heartbeat goes stale
            assert httpx.get(url, headers=stack.headers).json()["state"] == "in_progress"
            stored_before = vault_bytes(data, stack, a_id)
            a.start()
            ended = final(stack, url, a, timeout=120)
            assert ended["state"] == "completed", (ended, a.text())  # re-driven, attempt 2
            assert ended["files_searched"] == big.files
            # Resumed from its checkpoint: little stored again.
            stored_again = vault_bytes(data, stack, a_id) - stored_before
            assert stored_again <= 0.6 * remaining, (stored_again, remaining)
            run_id = url.rsplit("/", 1)[-1]
            assert f"re-driving backup {run_id} (attempt 2)" in stack.text()  # by the sweeper
            assert f"backup {run_id} (attempt 2) starts" in a.whole_text()  # handed over again

            # Agent A's token on agent B's run, vault objects and channel.
            mine = a.token(stack.base)
            b_run = backup(stack, configure(stack, b_id, tree))
            theirs = {"X-Auth-Token": mine}
            refused = [
                httpx.patch(
                    b_run,
                    content=json.dumps([{"op": "replace", "path": "/files_searched", "value": 1}]),
                    headers={**theirs, **PATCH},
                ),
                httpx.get(f"{stack.base}/agents/{b_id}/vault/objects/config", headers=theirs),
                httpx.put(
                    f"{stack.base}/agents/{b_id}/vault/objects/config", content=b"x", headers=theirs
                ),
                httpx.get(
                    f"{stack.base}/agents/{b_id}/channel", params={"wait": "0"}, headers=theirs
                ),
            ]
            assert [r.status_code for r in refused] == [403, 403, 403, 403], [
                r.text for r in refused
            ]
        finally:
            a.stop()
            b.stop()


# -- the boundary: the agent in a network namespace of its own ----------------------------------


@contextmanager
def network_namespace() -> Iterator[str]:
    """A namespace joined to this host by a veth pair: HOST_ADDR here, AGENT_ADDR inside."""
    name = f"cbagent{os.getpid() % 100000}"
    host_end, agent_end = f"{name}h"[:15], f"{name}a"[:15]
    steps = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", host_end, "type", "veth", "peer", "name", agent_end],
        ["ip", "link", "set", agent_end, "netns", name],
        ["ip", "addr", "add", f"{HOST_ADDR}/24", "dev", host_end],
        ["ip", "link", "set", host_end, "up"],
        ["ip", "netns", "exec", name, "ip", "addr", "add", f"{AGENT_ADDR}/24", "dev", agent_end],
        ["ip", "netns", "exec", name, "ip", "link", "set", agent_end, "up"],
        ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
    ]
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                message = f"cannot make a network namespace ({' '.join(step)}: {done.stderr})"
                if os.environ.get("CI") == "true":
                    pytest.fail(message)
                pytest.skip(message + "; the boundary is proven only where namespaces work")
        yield name
    finally:
        with suppress(Exception):
            subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        with suppress(Exception):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


REACH = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    socket.create_connection((host, port), timeout=2).close()
except OSError:
    print("unreachable")
else:
    print("reachable")
"""


def reach(netns: str, host: str, port: int) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", REACH, host, str(port)],
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout.strip()


def test_the_agent_in_its_own_network_namespace_reaches_only_the_api(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src", files=30, size=32 * 1024, with_excluded=False)
    with (
        network_namespace() as netns,
        procfile(
            tmp_path / "app", CLOUDBACKUP_DATA_DIR=str(tmp_path / "data"), **FAST_SWEEPS
        ) as stack,
    ):
        port = int(stack.base.split(":")[2].split("/")[0])
        api = f"http://{HOST_ADDR}:{port}"
        # Inside: neither the database nor the broker, only the API's port.
        assert reach(netns, "127.0.0.1", 5432) == "unreachable"
        assert reach(netns, "127.0.0.1", 6379) == "unreachable"
        assert reach(netns, HOST_ADDR, port) == "reachable"
        agent = HostAgent(tmp_path / "agent", tmp_path / "agent.log", netns=netns)
        agent_id = agent.register(api, stack.headers["X-Auth-Token"], f"ns-{uuid.uuid4().hex[:6]}")
        try:
            agent.start()
            body = final(stack, backup(stack, configure(stack, agent_id, tree)), agent)
        finally:
            agent.stop()
    assert body["state"] == "completed", (body, agent.text())
    assert (body["files_searched"], body["bytes_searched"]) == (tree.files, tree.bytes)
    assert body["files_backed_up"] == tree.files
    assert socket  # the reach checks above ran in the namespace, not here
