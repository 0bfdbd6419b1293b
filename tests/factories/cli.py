"""Run `cloudbackup ...` in-process against the real API through a Litestar TestClient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cloudbackup.cli import app
from factories.api import PROJECT

BASE = "http://testserver.local"  # the TestClient's base URL


class Cli:
    """``cli("backups", "list")``: the client commands with a token and project in the env."""

    def __init__(self, http: Any, secret: str, tmp_path: Path) -> None:
        self.http = http
        self.env = {
            "CLOUDBACKUP_URL": BASE,
            "CLOUDBACKUP_TOKEN": secret,
            "CLOUDBACKUP_PROJECT": PROJECT,
            "CLOUDBACKUP_CLIENT_CONFIG": str(tmp_path / "client.toml"),
            "COLUMNS": "220",
        }

    def __call__(self, *args: str, input: str | None = None, **env: str) -> Any:
        result = CliRunner().invoke(
            app, list(args), obj={"http": self.http}, env={**self.env, **env}, input=input
        )
        assert "Traceback" not in result.output, result.output
        return result
