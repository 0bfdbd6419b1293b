"""The agent host's install, for real (issue 11 item 7): a venv holding only
`pip install '<this repository>[agent]'` (from PyPI and the machine's wheels) has none of the
server's packages, and its `cloudbackup agent register|run` backs up and restores through the
API of the Procfile's stack. The venv is built once per test session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_procfile import ROOT, procfile
from test_remote_agent import (
    FAST_SWEEPS,
    HostAgent,
    agent_env,
    backup,
    configure,
    final,
    restore_elsewhere,
)

from factories.trees import make_tree

pytestmark = [pytest.mark.slow, pytest.mark.services]

SERVER_ONLY = ["litestar", "celery", "sqlalchemy", "sqlmodel", "alembic", "asyncpg", "psycopg"]
SERVER_ONLY += ["redis", "boto3", "uvicorn", "kombu"]
FIND = """
import importlib.util, sys
import cloudbackup
print(cloudbackup.__file__)
print(",".join(name for name in sys.argv[1:] if importlib.util.find_spec(name) is not None))
"""


@pytest.fixture(scope="session")
def agent_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the agent's install only (a wheel built from this checkout, not editable)."""
    venv = tmp_path_factory.mktemp("agent-install") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", f"{ROOT}[agent]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return venv


def test_an_agent_only_install_backs_up_and_restores_through_the_api(
    agent_venv: Path, tmp_path: Path
) -> None:
    python = agent_venv / "bin" / "python"
    found = subprocess.run(
        [str(python), "-c", FIND, *SERVER_ONLY],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout: its src/ must not be what runs
        env=agent_env(python.parent),
        check=True,
    ).stdout.splitlines()
    assert found[0].startswith(str(agent_venv)), found  # the venv's own copy of the package
    assert found[1] == "", f"the agent's install holds server packages: {found[1]}"

    tree = make_tree(tmp_path / "tree", files=40, size=48 * 1024, with_excluded=False)
    program = [str(agent_venv / "bin" / "cloudbackup")]
    agent = HostAgent(tmp_path / "agent", tmp_path / "agent.log", program=program)
    with procfile(
        tmp_path / "app", CLOUDBACKUP_DATA_DIR=str(tmp_path / "data"), **FAST_SWEEPS
    ) as stack:
        api = stack.base.removesuffix("/v2/110011")
        agent_id = agent.register(api, stack.headers["X-Auth-Token"], "agent-only-install")
        try:
            agent.start()
            done = final(stack, backup(stack, configure(stack, agent_id, tree)), agent)
            assert done["state"] == "completed", (done, agent.text())
            assert (done["files_backed_up"], done["bytes_backed_up"]) == (tree.files, tree.bytes)
            restore_elsewhere(stack, agent, agent_id, done["id"], tree, tmp_path / "restored")
        finally:
            agent.stop()
