"""An agent host installs only what the agent needs (issue 11 item 7): the package's base
dependencies hold none of the server's packages, and `cloudbackup agent register|run` (and every
`--help`) work in a process where those packages cannot be imported at all. The real install,
in a venv of its own, is tests/e2e/test_agent_install.py."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
# What an agent host must not need (issue 11: Litestar, Celery, SQLAlchemy, the drivers...).
SERVER_ONLY = (
    "litestar",
    "celery",
    "sqlalchemy",
    "sqlmodel",
    "alembic",
    "asyncpg",
    "psycopg",
    "redis",
    "boto3",
    "uvicorn",
    "kombu",
)

# Runs `cloudbackup ARGS...` (the entry point's own `main`) with SERVER_ONLY unimportable.
POISONED = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None
sys.meta_path.insert(0, Blocked())
for loaded in [m for m in sys.modules if m.split(".")[0] in BLOCKED]:
    del sys.modules[loaded]
sys.argv = ["cloudbackup", *sys.argv[2:]]
if sys.argv[1:] == ["--import-agent"]:
    import pkgutil, importlib, cloudbackup.agent, cloudbackup.engine, cloudbackup.client
    for package in (cloudbackup.agent, cloudbackup.engine, cloudbackup.client):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    print("imported", len([m for m in sys.modules if m.startswith("cloudbackup.")]))
    sys.exit(0)
from cloudbackup.cli import main
main()
"""


def cloudbackup_without_server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", POISONED, ",".join(SERVER_ONLY), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(ROOT)},
    )


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("-", "_")


def test_the_base_dependencies_hold_none_of_the_servers_packages() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {_name(r) for r in project["dependencies"]}
    assert not base & set(SERVER_ONLY), base & set(SERVER_ONLY)
    assert {"httpx", "msgspec", "blake3", "zstandard", "cryptography", "typer"} <= base
    server = {_name(r) for r in project["optional-dependencies"]["server"]}
    assert set(SERVER_ONLY) - {"kombu"} <= server  # kombu comes with celery
    assert "agent" in project["optional-dependencies"]  # `pip install 'cloudbackup[agent]'`


def test_the_poison_works() -> None:
    imports_litestar = POISONED.replace("from cloudbackup.cli", "import litestar\n#")
    done = subprocess.run(
        [sys.executable, "-c", imports_litestar, ",".join(SERVER_ONLY), "--help"],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "blocked" in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["agent", "--help"],
        ["agent", "register", "--help"],
        ["agent", "run", "--help"],
    ],
    ids=" ".join,
)
def test_the_agents_commands_show_their_help_without_the_servers_packages(
    args: list[str],
) -> None:
    done = cloudbackup_without_server(*args)
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout


def test_every_module_of_the_agent_engine_and_client_imports_without_them() -> None:
    done = cloudbackup_without_server("--import-agent")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported")


def test_agent_run_and_register_reach_their_own_errors_without_them(tmp_path: Path) -> None:
    run = cloudbackup_without_server("agent", "run", "--state-dir", str(tmp_path / "none"))
    assert run.returncode == 2 and "no agent in" in run.stderr, run.stderr
    register = cloudbackup_without_server(
        "agent",
        "register",
        *("--url", "http://127.0.0.1:9", "--project", "110011", "--token", "t"),
        *("--name", "host", "--state-dir", str(tmp_path / "state")),
    )
    assert register.returncode == 2, register.stderr
    assert "cannot reach the API at http://127.0.0.1:9" in register.stderr


def test_a_server_command_on_an_agent_install_says_what_to_install() -> None:
    done = cloudbackup_without_server("web")
    assert done.returncode == 2, done.stderr
    assert "cloudbackup[server]" in done.stderr and "Traceback" not in done.stderr
