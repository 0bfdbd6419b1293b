"""V2-V7 through the real stack (the Procfile's API, worker and beat on PostgreSQL and Redis)
and a remote agent process: `cloudbackup agents encrypt` (V2 -> the agent's channel -> V3 -> V4)
enables and then changes the vault's password, `cloudbackup agents verify-password` (V5 -> V6 ->
V7) tells the right password from a wrong one, and a backup after that still completes into a
vault whose stored objects hold no plaintext."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from test_procfile import Procfile, procfile
from test_remote_agent import FAST_SWEEPS, HostAgent, agent_env, backup, configure, final

from factories.trees import make_tree

pytestmark = [pytest.mark.slow, pytest.mark.services]


def cli(stack: Procfile, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    """The user's CLI, with the connection on its command line."""
    api = stack.base.removesuffix("/v2/110011")
    connection = ("--url", api, "--project", "110011", "--token", stack.headers["X-Auth-Token"])
    return subprocess.run(
        [sys.executable, "-m", "cloudbackup.cli", *args, *connection, "--json"],
        input=stdin,
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_encrypt_change_and_verify_a_remote_agents_vault_through_the_stack(
    tmp_path: Path,
) -> None:
    tree = make_tree(tmp_path / "tree", files=20, size=32 * 1024, with_excluded=False)
    marker = b"the-plaintext-marker-of-this-test" * 8
    (tree.root / "marker.txt").write_bytes(marker)
    data = tmp_path / "data"
    agent = HostAgent(tmp_path / "agent", tmp_path / "agent.log")
    with procfile(tmp_path / "app", CLOUDBACKUP_DATA_DIR=str(data), **FAST_SWEEPS) as stack:
        api = stack.base.removesuffix("/v2/110011")
        agent_id = agent.register(api, stack.headers["X-Auth-Token"], "host-v")
        try:
            agent.start()
            enable = cli(stack, "agents", "encrypt", agent_id, "--password-stdin", stdin="one\n")
            assert enable.returncode == 0, (enable.stdout, enable.stderr, agent.text())
            assert '"event": "vault_encryption_enabled"' in enable.stdout
            shown = httpx.get(f"{stack.base}/agents/{agent_id}", headers=stack.headers).json()
            assert shown["vault"]["encrypted"] is True
            assert (agent.state_dir / "vault.key").read_text() == "one"

            wrong_old = cli(
                stack, "agents", "encrypt", agent_id, "--password-stdin", stdin="nope\ntwo\n"
            )
            assert wrong_old.returncode == 1, (wrong_old.stdout, agent.text())
            assert '"succeeded": false' in wrong_old.stdout
            change = cli(
                stack, "agents", "encrypt", agent_id, "--password-stdin", stdin="one\ntwo\n"
            )
            assert change.returncode == 0, (change.stdout, change.stderr, agent.text())
            assert '"event": "vault_encryption_changed"' in change.stdout

            right = cli(
                stack, "agents", "verify-password", agent_id, "--password-stdin", stdin="two\n"
            )
            assert right.returncode == 0 and '"valid": true' in right.stdout, right.stdout
            wrong = cli(
                stack, "agents", "verify-password", agent_id, "--password-stdin", stdin="one\n"
            )
            assert wrong.returncode == 1 and '"valid": false' in wrong.stdout, wrong.stdout

            done = final(stack, backup(stack, configure(stack, agent_id, tree)), agent)
            assert done["state"] == "completed", (done, agent.text())
            vault_id = shown["vault"]["id"]
            stored = [p for p in (data / "vault" / vault_id).rglob("*") if p.is_file()]
            assert any("packs" in str(p) for p in stored)
            for path in stored:
                assert marker[:33] not in path.read_bytes(), path
        finally:
            agent.stop()
