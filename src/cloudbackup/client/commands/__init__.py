"""`cloudbackup agents|configs|backups|restores|events|login`: the API from a terminal.

These commands talk to the HTTP API only (never to the database), so they work from any machine
that can reach it. Every command takes ``--url``/``--token``/``--project`` (or the
``CLOUDBACKUP_URL``/``CLOUDBACKUP_TOKEN``/``CLOUDBACKUP_PROJECT`` variables, or the file written
by ``cloudbackup login``) and ``--json``. Exit codes: 0 done, 1 the run ended failed, stopped,
skipped or missed, 2 bad usage or configuration, 3 the run ended completed_with_errors, 4 the API
refused (HTTP 4xx/5xx) or could not be reached, 130 interrupted with the run left going.
"""

from __future__ import annotations

import typer

from cloudbackup.client.commands.agents import agents_app
from cloudbackup.client.commands.backups import backups_app
from cloudbackup.client.commands.configs import configs_app
from cloudbackup.client.commands.events import events
from cloudbackup.client.commands.login import login
from cloudbackup.client.commands.restores import restores_app

_PANEL = "Client (talks to the API)"


def register(app: typer.Typer) -> None:
    """Add the client commands to the `cloudbackup` command."""
    app.add_typer(agents_app, name="agents", rich_help_panel=_PANEL)
    app.add_typer(configs_app, name="configs", rich_help_panel=_PANEL)
    app.add_typer(backups_app, name="backups", rich_help_panel=_PANEL)
    # `cloudbackup backup start X` reads better than `backups start X`: the same commands.
    app.add_typer(backups_app, name="backup", hidden=True)
    app.add_typer(restores_app, name="restores", rich_help_panel=_PANEL)
    app.command("events", rich_help_panel=_PANEL)(events)
    app.command("login", rich_help_panel=_PANEL)(login)
