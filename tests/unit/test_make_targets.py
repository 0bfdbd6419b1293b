"""`make dev` installs what the service needs and nothing for the tests; `make test` adds the test
tools (issue 13 item 6: `make dev` used to build the 933 MB test venv before the first start).
Read from make's dry run (`make -n -B`), so nothing is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _dry_run(target: str) -> list[str]:
    make = shutil.which("make")
    assert make, "make is needed to set the project up (README)"
    ran = subprocess.run(
        [make, "-n", "-B", target, "VENV=/nonexistent/venv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in ran.stdout.splitlines() if "pip install" in line and " -e " in line]


def test_make_dev_installs_the_service_without_the_test_tools():
    (install,) = _dry_run("dev")
    assert "'.[server]'" in install, install


def test_make_test_adds_the_test_tools():
    (install,) = _dry_run("test")
    assert "'.[server,test]'" in install, install


def test_the_server_extra_holds_no_test_tool():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {
        extra: {re.match(r"[A-Za-z0-9_.-]+", req).group() for req in reqs}  # type: ignore[union-attr]
        for extra, reqs in extras["optional-dependencies"].items()
    }
    assert names["test"] and not names["test"] & names["server"]
