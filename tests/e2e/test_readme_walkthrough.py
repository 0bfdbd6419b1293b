"""The README's walk-throughs, pasted as they are and in order: the curl block, then the CLI
block, run against `cloudbackup dev` in a fresh folder holding a copy of the repository's `src/`
and its `.venv`; every step succeeds and nothing needs filling in."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from factories.dev import dev_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def readme_block(heading: str) -> str:
    """The first ```sh block under ``heading`` in the README."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, heading
    return found.group(1)


SECTIONS = ("A first backup, with curl", "Command-line client")


@pytest.mark.parametrize("heading", SECTIONS)
def test_a_walk_through_has_nothing_to_fill_in(heading):
    block = readme_block(heading)
    assert not re.search(r"<[a-z_-]+>", block), "a placeholder the reader must replace"


def _paste(
    block: str, port: int, work: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.replace("127.0.0.1:8000", f"127.0.0.1:{port}")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    return ran


def test_the_walk_throughs_run_as_pasted_in_order(tmp_path):
    work = tmp_path / "clone"
    work.mkdir()
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (work / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDBACKUP_")}
    env["HOME"] = str(tmp_path / "home")  # `cloudbackup login` writes below it
    with dev_server(work, env, tmp_path / "dev.log") as port:
        ran = _paste(readme_block(SECTIONS[0]), port, work, env)
        assert "HTTP/1.1 201" in ran.stdout
        assert re.search(r"^completed \d+ files,", ran.stdout, re.M), ran.stdout[-2000:]
        restored = work / "restored" / str(work / "src").lstrip("/")
        assert (restored / "cloudbackup" / "domain" / "run_protocol.py").read_bytes() == (
            work / "src" / "cloudbackup" / "domain" / "run_protocol.py"
        ).read_bytes()
        assert re.search(r"HTTP/1.1 (204|409)", ran.stdout)  # the stop of the second run

        cli = _paste(readme_block(SECTIONS[1]), port, work, env)
        assert "registered agent" in cli.stdout and "(laptop-cli)" in cli.stdout
        assert re.search(r"backup \S+ completed", cli.stdout), cli.stdout[-2000:]
        assert re.search(r"restore \S+ completed", cli.stdout), cli.stdout[-2000:]
        again = work / "restored-cli" / str(work / "src").lstrip("/")
        assert (again / "cloudbackup" / "domain" / "run_protocol.py").exists()
