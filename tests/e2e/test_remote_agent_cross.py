"""A restore onto another remote agent through the real stack (the Procfile's API, worker and
beat on PostgreSQL and Redis) and two agent processes, each with its own state folder: agent A
backs up into its vault, `cloudbackup agents encrypt` gives that vault a password, and
`cloudbackup restores start --agent B --password-stdin` hands the password to agent B sealed
with B's public key. B reads A's vault through the API and writes the files byte-identical;
once the restore has ended, B's token reads nothing of A's vault, and it never writes there."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from test_procfile import procfile
from test_remote_agent import FAST_SWEEPS, backup, configure, final, running_agents
from test_remote_agent_vault import cli

from factories.trees import make_tree

pytestmark = [pytest.mark.slow, pytest.mark.services]


def test_a_backup_of_one_remote_agent_restores_byte_identical_onto_another(
    tmp_path: Path,
) -> None:
    tree = make_tree(tmp_path / "tree", files=40, size=48 * 1024, with_excluded=False)
    data = tmp_path / "data"
    with (
        procfile(tmp_path / "app", CLOUDBACKUP_DATA_DIR=str(data), **FAST_SWEEPS) as stack,
        running_agents(stack, tmp_path / "agents", "host-a", "host-b") as agents,
    ):
        [(a, a_id), (b, b_id)] = agents
        made = final(stack, backup(stack, configure(stack, a_id, tree)), a)
        assert made["state"] == "completed", (made, a.text())
        enable = cli(stack, "agents", "encrypt", a_id, "--password-stdin", stdin="a's secret\n")
        assert enable.returncode == 0, (enable.stdout, enable.stderr, a.text())

        target = tmp_path / "onto-b"
        args = ("restores", "start", made["id"], "--agent", b_id, "--to", str(target))
        wrong = cli(stack, *args, "--password-stdin", stdin="not a's secret\n")
        assert wrong.returncode == 0, (wrong.stdout, wrong.stderr)
        failed = final(stack, f"{stack.base}/restores/{json.loads(wrong.stdout)['id']}", b)
        assert failed["state"] == "failed", (failed, b.text())
        assert "does not open the source agent's vault" in failed["errors"]["diagnostics"]
        assert not target.exists()

        started = cli(stack, *args, "--password-stdin", stdin="a's secret\n")
        assert started.returncode == 0, (started.stdout, started.stderr)
        restore_id = json.loads(started.stdout)["id"]
        done = final(stack, f"{stack.base}/restores/{restore_id}", b)
        assert (done["state"], done["files_restored"]) == ("completed", tree.files), (
            done,
            b.text(),
        )
        for path in tree.root.rglob("*"):
            if path.is_file():  # byte-identical, written by agent B
                copy = target / str(path).lstrip("/")
                assert copy.read_bytes() == path.read_bytes(), path
        assert f"restore {restore_id} reads agent {a_id}'s vault" in b.log.read_text()

        theirs = {"X-Auth-Token": b.token(stack.base)}
        objects = f"{stack.base}/agents/{a_id}/vault/objects"
        refused = [
            httpx.get(f"{objects}/config", headers=theirs),
            httpx.get(objects, params={"prefix": ""}, headers=theirs),
            httpx.put(f"{objects}/config", content=b"x", headers=theirs),
            httpx.delete(f"{objects}/config", headers=theirs),
        ]
        assert [r.status_code for r in refused] == [403] * 4, [r.text for r in refused]
