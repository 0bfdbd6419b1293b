"""The arguments and options several command groups share, with their shell completion."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated

import httpx
import typer

from cloudbackup.client.api import ApiClient
from cloudbackup.client.config import resolve


def complete_ids(kind: str) -> Callable[[str], list[tuple[str, str]]]:
    """Shell completion of ids (and names) from the API, quietly empty when it cannot ask."""

    def complete(incomplete: str) -> list[tuple[str, str]]:
        try:
            config = resolve(
                os.environ.get("CLOUDBACKUP_URL"),
                os.environ.get("CLOUDBACKUP_TOKEN"),
                os.environ.get("CLOUDBACKUP_PROJECT"),
            )
            with httpx.Client(timeout=3.0) as http:
                api = ApiClient(http, config.url, config.project, config.token)
                if kind == "configurations":
                    items = api.list_configurations()["configurations"]
                elif kind == "agents":
                    items = api.list_agents()["agents"]
                else:
                    items = api.list_backups(limit=50)["backups"]
        except Exception:  # completion must never print a traceback
            return []
        return [
            (str(i["id"]), str(i.get("name") or i.get("state") or ""))
            for i in items
            if str(i["id"]).startswith(incomplete)
        ]

    return complete


AgentArg = Annotated[
    str, typer.Argument(help="Agent id, name or id prefix.", autocompletion=complete_ids("agents"))
]
ConfigArg = Annotated[
    str,
    typer.Argument(
        help="Configuration id, name or id prefix.", autocompletion=complete_ids("configurations")
    ),
]
BackupArg = Annotated[
    str,
    typer.Argument(
        help="Backup id (or its first characters).", autocompletion=complete_ids("backups")
    ),
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option("--exclude", "-x", help="Folder (or file:PATH) inside an inclusion to skip."),
]
