"""`cloudbackup backups list|show|errors|stop|start|wait` (also spelled `backup`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cloudbackup.client import format as fmt
from cloudbackup.client.api import ApiError
from cloudbackup.client.commands.arguments import BackupArg, ConfigArg, complete_ids
from cloudbackup.client.commands.follow import IntervalOpt, WaitOpt, follow
from cloudbackup.client.commands.names import backup_id_of, config_id_of
from cloudbackup.client.commands.session import Fail, Session, api_command
from cloudbackup.client.commands.tables import Grid, pairs, print_errors, yes_no

BACKUP_STATES = (
    "start_requested",
    "start_scheduled",
    "queued",
    "preparing",
    "in_progress",
    "stop_requested",
    "completed",
    "completed_with_errors",
    "failed",
    "stopped",
    "skipped",
    "missed",
)

backups_app = typer.Typer(
    help="Backups: start, stop, follow and inspect runs.", no_args_is_help=True
)


def _config_names(s: Session) -> dict[str, str]:
    try:
        return {c["id"]: c.get("name", "") for c in s.api.list_configurations()["configurations"]}
    except ApiError:
        return {}


@api_command(backups_app, "list")
def backups_list(
    s: Session,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            "-s",
            help="Only these states (repeat, or comma-separated).",
            autocompletion=lambda: list(BACKUP_STATES),
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            help="Only backups of this configuration.",
            autocompletion=complete_ids("configurations"),
        ),
    ] = None,
    restorable: Annotated[
        bool, typer.Option("--restorable", help="Only backups a restore can use.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 20,
) -> None:
    """List backups, newest first."""
    states = {part.strip() for item in state or [] for part in item.split(",") if part.strip()}
    unknown = sorted(states - set(BACKUP_STATES))
    if unknown:
        raise Fail(f"unknown state(s) {', '.join(unknown)}; known: {', '.join(BACKUP_STATES)}")
    config_id = config_id_of(s, config) if config else None
    found: list[dict[str, Any]] = []
    marker: str | None = None
    # B2 has no state filter: read pages until enough match (at most 10 pages of 100).
    for _ in range(10):
        page = s.api.list_backups(
            marker=marker,
            limit=100 if states else min(limit, 100),
            configuration_id=config_id,
            restorable=True if restorable else None,
        )
        items = page["backups"]
        found += [b for b in items if not states or b.get("state") in states]
        more = any(link.get("rel") == "next" for link in page.get("links") or [])
        if len(found) >= limit or not more or not items:
            break
        marker = items[-1]["id"]
    found = found[:limit]
    data = {"backups": found}

    def human() -> None:
        if not found:
            s.out.print("no backups" + (" in those states" if states else ""))
            return
        names = _config_names(s)
        table = Grid(
            "ID",
            "CONFIGURATION",
            "STATE",
            "STARTED (UTC)?",
            "TOOK?",
            "FILES?",
            "STORED",
            "ERRORS?",
        )
        for b in found:
            cid = fmt.ref_id(b.get("configuration")) or ""
            table.add_row(
                b["id"],
                names.get(cid) or fmt.short_id(cid),
                b.get("state"),
                fmt.when(b.get("started_time")),
                fmt.elapsed(b.get("started_time"), b.get("ended_time")),
                f"{b.get('files_backed_up', 0)}/{b.get('files_searched', 0)}",
                fmt.size(b.get("bytes_backed_up")),
                str((b.get("errors") or {}).get("count", 0)),
            )
        s.out.print(table)

    s.emit(data, human)


@api_command(backups_app, "show")
def backups_show(s: Session, backup: BackupArg) -> None:
    """Show one backup: state, times, counters, error summary."""
    data = s.api.get_backup(backup_id_of(s, backup))

    def human() -> None:
        errors = data.get("errors") or {}
        s.out.print(
            pairs(
                [
                    ("id", data["id"]),
                    ("configuration", fmt.ref_id(data.get("configuration"))),
                    ("agent", fmt.ref_id(data.get("agent"))),
                    ("state", data.get("state")),
                    ("started", fmt.when(data.get("started_time"))),
                    ("ended", fmt.when(data.get("ended_time"))),
                    ("took", fmt.elapsed(data.get("started_time"), data.get("ended_time"))),
                    (
                        "searched",
                        f"{data.get('files_searched')} files, "
                        f"{fmt.size(data.get('bytes_searched'))}",
                    ),
                    (
                        "stored",
                        f"{data.get('files_backed_up')} files, "
                        f"{fmt.size(data.get('bytes_backed_up'))}",
                    ),
                    ("rate", fmt.rate(data.get("bandwidth_avg_bps"))),
                    ("snapshot", data.get("snapshot_id")),
                    ("restorable", yes_no(data.get("restorable"))),
                    ("errors", f"{errors.get('count', 0)} {errors.get('reason') or ''}".strip()),
                    ("diagnostics", errors.get("diagnostics")),
                ]
            )
        )

    s.emit(data, human)


@api_command(backups_app, "errors")
def backups_errors(s: Session, backup: BackupArg) -> None:
    """List the files a backup could not process."""
    data = s.api.backup_errors(backup_id_of(s, backup))
    s.emit(data, lambda: print_errors(s, data))


@api_command(backups_app, "stop")
def backups_stop(s: Session, backup: BackupArg) -> None:
    """Ask a backup to stop (it ends `stopped` within about a second)."""
    backup = backup_id_of(s, backup)
    s.api.stop_backup(backup)
    data = s.api.get_backup(backup)
    s.emit(data, lambda: s.out.print(f"stop requested; backup {backup} is {data.get('state')}"))


@api_command(backups_app, "start")
def backups_start(
    s: Session, config: ConfigArg, wait: WaitOpt = False, interval: IntervalOpt = 0.5
) -> int | None:
    """Start a backup of a configuration now."""
    data = s.api.start_backup(config_id_of(s, config))
    if not wait:
        s.emit(data, lambda: s.out.print(f"backup [bold]{data['id']}[/bold] {data['state']}"))
        return None
    if not s.as_json:
        s.err.print(f"backup [bold]{data['id']}[/bold] started; Ctrl-C to stop it")
    return follow(s, "backups", data["id"], interval)


@api_command(backups_app, "wait")
def backups_wait(s: Session, backup: BackupArg, interval: IntervalOpt = 0.5) -> int | None:
    """Follow a running backup until it ends (exit code as for start --wait)."""
    return follow(s, "backups", backup_id_of(s, backup), interval)
