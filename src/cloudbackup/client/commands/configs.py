"""`cloudbackup configs list|show|create|edit|delete`: backup configurations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cloudbackup.client import format as fmt
from cloudbackup.client.commands.arguments import ConfigArg, ExcludeOpt, complete_ids
from cloudbackup.client.commands.names import agent_id_of, config_id_of
from cloudbackup.client.commands.session import EXIT_USAGE, Fail, Session, api_command
from cloudbackup.client.commands.tables import Grid, pairs, yes_no
from cloudbackup.client.drafts import (
    SCHEDULE_HELP,
    configuration_body,
    load_document,
    notifications,
    path_items,
    path_text,
    schedule_from_words,
    schedule_words,
)

configs_app = typer.Typer(
    help="Backup configurations: what to back up, when, and for how long.", no_args_is_help=True
)

IncludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--include",
        "-i",
        help="Folder to back up (repeat); prefix file: for a single file, e.g. file:/etc/hosts.",
    ),
]
ScheduleOpt = Annotated[str | None, typer.Option("--schedule", help=SCHEDULE_HELP)]
ZoneOpt = Annotated[str | None, typer.Option("--time-zone", help="IANA time zone of the schedule.")]
EmailOpt = Annotated[
    list[str] | None,
    typer.Option("--email", help="E-mail address told about failures (repeat)."),
]
FileOpt = Annotated[
    Path | None,
    typer.Option(
        "--file",
        "-f",
        help="JSON or YAML document of configuration fields.",
        exists=False,
        dir_okay=False,
    ),
]


@api_command(configs_app, "list")
def configs_list(s: Session) -> None:
    """List the project's configurations."""
    data = s.api.list_configurations()

    def human() -> None:
        table = Grid(
            "ID", "NAME", "AGENT?", "ENABLED?", "SCHEDULE", "NEXT RUN (UTC)?", "LAST COMPLETED?"
        )
        for c in data["configurations"]:
            backups = c.get("backups") or {}
            table.add_row(
                c["id"],
                c.get("name"),
                fmt.short_id(fmt.ref_id(c.get("agent"))),
                yes_no(c.get("enabled")),
                schedule_words(c.get("schedule")),
                fmt.when((backups.get("next") or {}).get("scheduled_time")),
                fmt.short_id(fmt.ref_id(backups.get("last_completed"))),
            )
        s.out.print(table if data["configurations"] else "no configurations yet")

    s.emit(data, human)


def _show_configuration(s: Session, data: dict[str, Any]) -> None:
    backups = data.get("backups") or {}
    s.out.print(
        pairs(
            [
                ("id", data["id"]),
                ("name", data.get("name")),
                ("agent", fmt.ref_id(data.get("agent"))),
                ("enabled", yes_no(data.get("enabled"))),
                ("deleted", yes_no(data.get("deleted"))),
                ("schedule", schedule_words(data.get("schedule"))),
                ("next run", fmt.when((backups.get("next") or {}).get("scheduled_time"))),
                ("last completed", fmt.ref_id(backups.get("last_completed"))),
                ("retention", f"{(data.get('retention') or {}).get('days')} days (0 = forever)"),
                ("inclusions", "\n".join(path_text(i) for i in data.get("inclusions") or [])),
                ("exclusions", "\n".join(path_text(i) for i in data.get("exclusions") or [])),
                (
                    "notify",
                    "\n".join(
                        f"{n.get('destination')}"
                        f" ({'failure' if n.get('on_failure') else ''}"
                        f"{', success' if n.get('on_success') else ''})"
                        for n in data.get("notifications") or []
                    ),
                ),
            ]
        )
    )


@api_command(configs_app, "show")
def configs_show(s: Session, config: ConfigArg) -> None:
    """Show one configuration with its inclusions, exclusions and schedule."""
    data = s.api.get_configuration(config_id_of(s, config))
    s.emit(data, lambda: _show_configuration(s, data))


def _local_zone() -> str:
    try:
        target = Path("/etc/localtime").resolve()
        if "zoneinfo/" in str(target):
            return str(target).split("zoneinfo/", 1)[1]
    except OSError:
        pass
    return "UTC"


@api_command(configs_app, "create")
def configs_create(
    s: Session,
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent",
            "-a",
            help="Agent id or name (default: the only agent).",
            autocompletion=complete_ids("agents"),
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="A name for people.")] = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    schedule: ScheduleOpt = None,
    time_zone: ZoneOpt = None,
    retention_days: Annotated[
        int, typer.Option("--retention-days", help="Days to keep each backup (0 = forever).")
    ] = 30,
    email: EmailOpt = None,
    notify_success: Annotated[
        bool, typer.Option("--notify-success", help="Also e-mail when a backup succeeds.")
    ] = False,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
    file: FileOpt = None,
) -> None:
    """Create a configuration from flags, or from a JSON/YAML file (flags override its fields)."""
    body: dict[str, Any] = dict(load_document(file)) if file else {}
    if agent or "agent_id" not in body:
        body["agent_id"] = agent_id_of(s, agent) if agent else _only_agent(s)
    zone = time_zone or (body.get("schedule") or {}).get("time_zone") or _local_zone()
    flags = configuration_body(
        agent_id=body["agent_id"],
        name=name or "",
        inclusions=path_items(include or []),
        exclusions=path_items(exclude or []),
        schedule=schedule_from_words(schedule, zone),
        retention_days=retention_days,
        emails=email or [],
        notify_on_success=notify_success,
        enabled=not disabled,
    )
    given = {
        "name": name is not None,
        "inclusions": bool(include),
        "exclusions": bool(exclude),
        "schedule": schedule is not None,
        "retention": not file or retention_days != 30,
        "notifications": bool(email),
        "enabled": not file or disabled,
    }
    for key, used in given.items():
        if used or key not in body:
            body[key] = flags[key]
    if not body.get("name"):
        raise Fail("a configuration needs a name: --name NAME")
    data = s.api.create_configuration(body)

    def human() -> None:
        s.out.print(f"created configuration [bold]{data['id']}[/bold] ({data.get('name')})")
        _show_configuration(s, data)

    s.emit(data, human)


def _only_agent(s: Session) -> str:
    agents = s.api.list_agents()["agents"]
    if len(agents) != 1:
        names = ", ".join(f"{a.get('name')} ({a['id']})" for a in agents) or "none registered"
        raise Fail(f"say which agent with --agent (agents: {names})")
    return str(agents[0]["id"])


@api_command(configs_app, "edit")
def configs_edit(
    s: Session,
    config: ConfigArg,
    name: Annotated[str | None, typer.Option("--name", "-n", help="New name.")] = None,
    enable: Annotated[
        bool | None,
        typer.Option(
            "--enable/--disable", help="Turn scheduled runs on or off.", show_default=False
        ),
    ] = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    no_exclusions: Annotated[
        bool, typer.Option("--no-exclusions", help="Remove every exclusion.")
    ] = False,
    schedule: ScheduleOpt = None,
    time_zone: ZoneOpt = None,
    retention_days: Annotated[
        int | None, typer.Option("--retention-days", help="Days to keep each backup.")
    ] = None,
    email: EmailOpt = None,
    file: FileOpt = None,
) -> None:
    """Change a configuration; lists given (--include, --exclude, --email) replace the old ones."""
    config_id = config_id_of(s, config)
    # The order of the keys is the order of the patch's operations: the file's, then the flags'.
    changes = _document_changes(file) if file else {}
    if name is not None:
        changes["/name"] = name
    if enable is not None:
        changes["/enabled"] = enable
    if include:
        changes["/inclusions"] = path_items(include)
    if exclude or no_exclusions:
        changes["/exclusions"] = path_items(exclude or [])
    if schedule is not None or time_zone is not None:
        changes["/schedule"] = _edited_schedule(s, config_id, schedule, time_zone)
    if retention_days is not None:
        changes["/retention/days"] = retention_days
    if email:
        changes["/notifications"] = notifications(email)
    if not changes:
        raise Fail("nothing to change: give at least one option (see --help)")
    s.api.update_configuration(config_id, changes)
    data = s.api.get_configuration(config_id)

    def human() -> None:
        s.out.print(f"updated configuration [bold]{config_id}[/bold]")
        _show_configuration(s, data)

    s.emit(data, human)


def _document_changes(file: Path) -> dict[str, Any]:
    """A JSON/YAML document's fields as patch paths; its retention is only ever the days."""
    document = load_document(file)
    changes: dict[str, Any] = {}
    if "retention" in document:
        changes["/retention/days"] = (document.pop("retention") or {}).get("days")
    changes.update({f"/{key}": value for key, value in document.items()})
    return changes


def _edited_schedule(
    s: Session, config_id: str, schedule: str | None, time_zone: str | None
) -> dict[str, Any] | None:
    """The schedule ``--schedule``/``--time-zone`` make of the configuration's current one."""
    current = s.api.get_configuration(config_id).get("schedule") or {}
    zone = time_zone or current.get("time_zone") or _local_zone()
    if schedule is None:  # only the zone changes
        if not current:
            raise Fail("this configuration has no schedule; give --schedule too")
        schedule = current["recurrence"][0]
    return schedule_from_words(schedule, zone)


@api_command(configs_app, "delete")
def configs_delete(
    s: Session,
    config: ConfigArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> int | None:
    """Delete a configuration (its backups stay readable; no new runs start)."""
    config_id = config_id_of(s, config)
    if not yes and not typer.confirm(f"Delete configuration {config_id}?", default=False):
        s.err.print("nothing deleted")
        return EXIT_USAGE
    s.api.delete_configuration(config_id)
    s.emit(
        {"id": config_id, "deleted": True},
        lambda: s.out.print(f"deleted configuration {config_id}"),
    )
    return None
