"""`cloudbackup login`: check a URL, project and token, and save them for the other commands."""

from __future__ import annotations

from typing import Annotated

import typer

from cloudbackup.client.commands.session import open_session
from cloudbackup.client.config import config_path, write_file


def login(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option("--url", envvar="CLOUDBACKUP_URL", help="API base URL.", prompt="API URL")
    ] = "http://127.0.0.1:8000",
    project: Annotated[
        str,
        typer.Option(
            "--project", envvar="CLOUDBACKUP_PROJECT", help="Project id.", prompt="Project id"
        ),
    ] = "",
    token: Annotated[
        str,
        typer.Option(
            "--token",
            envvar="CLOUDBACKUP_TOKEN",
            help="API token.",
            prompt="Token",
            hide_input=True,
        ),
    ] = "",
) -> None:
    """Check a URL, project and token against the API and save them for the other commands."""
    injected = (ctx.find_root().obj or {}).get("http")
    with open_session(url, token, project, False, http=injected) as s:
        s.api.list_configurations()  # any read proves the token and the project (403/404 if not)
        path = config_path()
        write_file(path, {"url": url.rstrip("/"), "token": token, "project": project})
        s.err.print(f"saved to {path} (readable by you only)")
