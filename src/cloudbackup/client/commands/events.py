"""`cloudbackup events`: the project's recent events, or one resource's, and `--follow`."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from cloudbackup.client import format as fmt
from cloudbackup.client.commands.names import (
    agent_id_of,
    backup_id_of,
    config_id_of,
    restore_id_of,
)
from cloudbackup.client.commands.session import Fail, Session, api_command


def _event_line(event: dict[str, Any]) -> str:
    extras = []
    for key in ("backup", "restore", "cleanup", "configuration", "agent"):
        ref = event.get(key)
        if isinstance(ref, dict) and ref.get("id"):
            extras.append(f"{key}={fmt.short_id(str(ref['id']))}")
    if "bytes_completed" in event:
        extras.append(
            f"{fmt.size(event.get('bytes_completed'))}/{fmt.size(event.get('total_bytes'))}"
        )
    if event.get("mode"):
        extras.append(f"mode={event['mode']}")
    return (
        f"{fmt.when(event.get('time'))}  {event.get('id'):>8}  {event.get('event')}  "
        + " ".join(extras)
    )


@api_command(None, "events")
def events(
    s: Session,
    backup: Annotated[str | None, typer.Option("--backup", help="Events of one backup.")] = None,
    restore: Annotated[str | None, typer.Option("--restore", help="Events of one restore.")] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Events of one agent.")] = None,
    config: Annotated[
        str | None, typer.Option("--config", help="Events of one configuration.")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events until Ctrl-C.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100, help="Recent ones.")] = 20,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="Poll seconds.")] = 1.0,
) -> int | None:
    """Show recent events of the project (or of one backup, restore, agent, configuration)."""
    chosen = [
        (kind, value)
        for kind, value in (
            ("backups", backup),
            ("restores", restore),
            ("agents", agent),
            ("configurations", config),
        )
        if value
    ]
    if len(chosen) > 1:
        raise Fail("give at most one of --backup, --restore, --agent, --config")
    owner = None
    if chosen:
        kind, text = chosen[0]
        owner = (kind, _ID_OF[kind](s, text))
    return _events(s, owner, follow, limit, interval)


_ID_OF = {
    "backups": backup_id_of,
    "restores": restore_id_of,
    "agents": agent_id_of,
    "configurations": config_id_of,
}


def _events(
    s: Session, owner: tuple[str, str] | None, follow: bool, limit: int, interval: float
) -> int:
    # The newest `limit` events, printed oldest first; then everything after the newest one.
    recent = s.api.list_events(owner, limit=limit, sort_dir="desc")["events"][::-1]
    for event in recent:
        _print_event(s, event)
    if not follow:
        return 0
    marker = str(recent[-1]["id"]) if recent else None
    try:
        while True:
            time.sleep(interval)
            page = s.api.list_events(owner, marker=marker, limit=100, sort_dir="asc")["events"]
            if marker is None:
                # An empty stream had no marker: skip what existed before we started listening.
                page = page[-limit:]
            for event in page:
                _print_event(s, event)
                marker = str(event["id"])
    except KeyboardInterrupt:
        return 0


def _print_event(s: Session, event: dict[str, Any]) -> None:
    if s.as_json:
        sys.stdout.write(json.dumps(event) + "\n")  # one object per line: easy to pipe
        sys.stdout.flush()
    else:
        s.out.print(_event_line(event), highlight=False, soft_wrap=True)
