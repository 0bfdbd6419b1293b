"""`cloudbackup agents|configs|backups|restores|events|login`: the API from a terminal.

These commands talk to the HTTP API only (never to the database), so they work from any machine
that can reach it. Every command takes ``--url``/``--token``/``--project`` (or the
``CLOUDBACKUP_URL``/``CLOUDBACKUP_TOKEN``/``CLOUDBACKUP_PROJECT`` variables, or the file written
by ``cloudbackup login``) and ``--json``. Exit codes: 0 done, 1 the run ended failed, stopped,
skipped or missed, 2 bad usage or configuration, 3 the run ended completed_with_errors, 4 the API
refused (HTTP 4xx/5xx) or could not be reached, 130 interrupted with the run left going.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import sys
import time
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from cloudbackup.client import format as fmt
from cloudbackup.client.api import ApiClient, ApiError, Unreachable, restore_body
from cloudbackup.client.config import ConfigError, config_path, resolve, write_file
from cloudbackup.client.drafts import (
    SCHEDULE_HELP,
    DraftError,
    configuration_body,
    load_document,
    notifications,
    path_items,
    path_text,
    schedule_from_words,
    schedule_words,
)
from cloudbackup.client.host import new_key, registration
from cloudbackup.client.progress import Snapshot, Watcher, counters, render, summary

EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_WITH_ERRORS = 3
EXIT_API = 4
EXIT_INTERRUPTED = 130
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
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

agents_app = typer.Typer(
    help="Agents: the machines whose files are backed up.", no_args_is_help=True
)
configs_app = typer.Typer(
    help="Backup configurations: what to back up, when, and for how long.", no_args_is_help=True
)
backups_app = typer.Typer(
    help="Backups: start, stop, follow and inspect runs.", no_args_is_help=True
)
restores_app = typer.Typer(
    help="Restores through the API (a worker writes the files on the destination agent).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the client commands to the `cloudbackup` command."""
    app.add_typer(agents_app, name="agents", rich_help_panel="Client (talks to the API)")
    app.add_typer(configs_app, name="configs", rich_help_panel="Client (talks to the API)")
    app.add_typer(backups_app, name="backups", rich_help_panel="Client (talks to the API)")
    # `cloudbackup backup start X` reads better than `backups start X`: the same commands.
    app.add_typer(backups_app, name="backup", hidden=True)
    app.add_typer(restores_app, name="restores", rich_help_panel="Client (talks to the API)")
    app.command("events", rich_help_panel="Client (talks to the API)")(events)
    app.command("login", rich_help_panel="Client (talks to the API)")(login)


# -- the session every command gets ------------------------------------------------------------
@dataclass
class Session:
    api: ApiClient
    as_json: bool
    out: Console
    err: Console

    def emit(self, data: Any, human: Callable[[], None]) -> None:
        """``--json``: the API's JSON as is; otherwise the human rendering."""
        if self.as_json:
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
        else:
            human()


class Fail(Exception):
    """A problem with what the user asked; printed as one line, exit code 2."""


_COMMON: dict[str, Any] = {
    "url": Annotated[
        str | None,
        typer.Option(
            "--url", envvar="CLOUDBACKUP_URL", help="API base URL.", rich_help_panel="Connection"
        ),
    ],
    "token": Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="CLOUDBACKUP_TOKEN",
            help="API token (X-Auth-Token).",
            show_default=False,
            rich_help_panel="Connection",
        ),
    ],
    "project": Annotated[
        str | None,
        typer.Option(
            "--project",
            envvar="CLOUDBACKUP_PROJECT",
            help="Project (tenant) id.",
            rich_help_panel="Connection",
        ),
    ],
    "as_json": Annotated[bool, typer.Option("--json", help="Print the API's JSON (for scripts).")],
}
_COMMON_DEFAULTS: dict[str, Any] = {"url": None, "token": None, "project": None, "as_json": False}


def api_command(
    group: typer.Typer | None, name: str, **options: Any
) -> Callable[[Callable[..., int | None]], Callable[..., None]]:
    """Register ``fn(session, ...)`` as a command that also takes the connection options.

    API errors become one line with the HTTP status (exit 4), never a traceback.
    """

    def decorate(fn: Callable[..., int | None]) -> Callable[..., None]:
        hints = typing.get_type_hints(fn, include_extras=True)
        own = [
            p.replace(annotation=hints[p.name])
            for p in inspect.signature(fn).parameters.values()
            if p.name != "s"
        ]
        common = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=_COMMON[n])
            for n, d in _COMMON_DEFAULTS.items()
        ]
        context = inspect.Parameter(
            "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
        )

        @functools.wraps(fn)
        def command(ctx: typer.Context, **kwargs: Any) -> None:
            connection = {n: kwargs.pop(n) for n in _COMMON_DEFAULTS}
            as_json = connection.pop("as_json")
            injected = (ctx.find_root().obj or {}).get("http")
            code = 0
            with _session(as_json=as_json, http=injected, **connection) as session:
                code = fn(session, **kwargs) or 0
            if code:
                raise typer.Exit(code)

        params = [context, *own, *common]
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        if group is not None:
            group.command(name, **options)(command)
        return command

    return decorate


@contextmanager
def _session(
    url: str | None,
    token: str | None,
    project: str | None,
    as_json: bool,
    http: httpx.Client | None = None,
) -> Iterator[Session]:
    """The API client for one command; ``http`` is injected by tests (a Litestar TestClient)."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    injected = http
    try:
        config = resolve(url, token, project)
        http = injected or httpx.Client(
            timeout=httpx.Timeout(30.0, connect=10.0),
            headers={"User-Agent": "cloudbackup-cli"},
        )
        out = Console(highlight=False)
        if not out.is_terminal and "COLUMNS" not in os.environ:
            out = Console(highlight=False, width=250)  # a pipe or a log: never wrap ids
        try:
            yield Session(
                ApiClient(http, config.url, config.project, config.token), as_json, out, err
            )
        finally:
            if not injected:
                http.close()
    except ApiError as exc:
        err.print(f"[red]error:[/red] {exc.one_line()}{_hint(exc)}", markup=True)
        raise typer.Exit(EXIT_API) from None
    except Unreachable as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True)
        raise typer.Exit(EXIT_API) from None
    except (ConfigError, DraftError, Fail) as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True)
        raise typer.Exit(EXIT_USAGE) from None


def _hint(exc: ApiError) -> str:
    if exc.status == 404 and exc.message == "Not found.":
        return " - check the project id; or this server does not offer the operation yet"
    if exc.status in (405, 501):
        return " - this server does not offer the operation yet"
    return ""


def _yes(value: object) -> str:
    return "yes" if value else "no"


class Grid:
    """A table that fits the terminal by leaving out optional columns (named with a trailing
    ``?``), right to left, instead of cutting ids or states short."""

    def __init__(self, *columns: str) -> None:
        self.columns = [c.rstrip("?") for c in columns]
        self.optional = [c.endswith("?") for c in columns]
        self.rows: list[list[str]] = []

    def add_row(self, *cells: object) -> None:
        self.rows.append(["-" if c is None else str(c) for c in cells])

    def __rich_console__(self, console: Console, options: Any) -> Any:
        keep = list(range(len(self.columns)))
        widths = [
            max([len(self.columns[i]), *(len(r[i]) for r in self.rows)])
            for i in range(len(self.columns))
        ]
        for i in reversed(range(len(self.columns))):
            if sum(widths[k] for k in keep) + 2 * (len(keep) - 1) <= options.max_width:
                break
            if self.optional[i]:
                keep.remove(i)
        table = Table(box=None, pad_edge=False, header_style="bold")
        for i in keep:
            table.add_column(self.columns[i], no_wrap=True, overflow="fold")
        for row in self.rows:
            table.add_row(*(row[i] for i in keep))
        yield table


def _pairs(rows: list[tuple[str, Any]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, "-" if value is None or value == "" else str(value))
    return table


# -- resolving names to ids ----------------------------------------------------------------------
def _pick(kind: str, text: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The item whose id or name is ``text`` (exact, then case-insensitive, then id prefix)."""
    for match in (
        lambda i: i.get("id") == text,
        lambda i: i.get("name") == text,
        lambda i: str(i.get("name", "")).lower() == text.lower(),
        lambda i: len(text) >= 4 and str(i.get("id", "")).startswith(text),
    ):
        found = [i for i in items if match(i)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            ids = ", ".join(str(i.get("id")) for i in found)
            raise Fail(f"{text!r} matches several {kind}s ({ids}); give the id")
    raise Fail(f"no {kind} with id or name {text!r}")


def _config_id(s: Session, text: str) -> str:
    if UUID.fullmatch(text):
        return text
    return str(_pick("configuration", text, s.api.list_configurations()["configurations"])["id"])


def _agent_id(s: Session, text: str) -> str:
    if UUID.fullmatch(text):
        return text
    return str(_pick("agent", text, s.api.list_agents()["agents"])["id"])


def _complete(kind: str) -> Callable[[str], list[tuple[str, str]]]:
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
        except Exception:  # noqa: BLE001 - completion must never print a traceback
            return []
        return [
            (str(i["id"]), str(i.get("name") or i.get("state") or ""))
            for i in items
            if str(i["id"]).startswith(incomplete)
        ]

    return complete


# -- agents ----------------------------------------------------------------------------------------
AgentArg = Annotated[
    str, typer.Argument(help="Agent id or name.", autocompletion=_complete("agents"))
]


@api_command(agents_app, "list")
def agents_list(s: Session) -> None:
    """List the project's agents."""
    data = s.api.list_agents()

    def human() -> None:
        table = Grid("ID", "NAME", "HOST?", "REGION?", "ENABLED", "REGISTERED?")
        for a in data["agents"]:
            host = a.get("host") or {}
            os_ = host.get("os") or {}
            table.add_row(
                a["id"],
                a.get("name"),
                f"{os_.get('name', '')} {os_.get('version', '')}".strip(),
                host.get("region") or "-",
                _yes(a.get("enabled")),
                fmt.when(a.get("registered_time")),
            )
        s.out.print(table if data["agents"] else "no agents registered yet")

    s.emit(data, human)


@api_command(agents_app, "show")
def agents_show(s: Session, agent: AgentArg) -> None:
    """Show one agent."""
    data = s.api.get_agent(_agent_id(s, agent))

    def human() -> None:
        host = data.get("host") or {}
        os_ = host.get("os") or {}
        vault = data.get("vault") or {}
        addresses = ", ".join(str(a.get("addr")) for a in host.get("addresses") or [])
        s.out.print(
            _pairs(
                [
                    ("id", data["id"]),
                    ("name", data.get("name")),
                    ("version", data.get("version")),
                    ("enabled", _yes(data.get("enabled"))),
                    (
                        "host",
                        f"{os_.get('name', '')} {os_.get('version', '')} "
                        f"{os_.get('architecture', '')}".strip(),
                    ),
                    ("flavor / region", f"{host.get('flavor')} / {host.get('region') or '-'}"),
                    ("machine", (host.get("machine") or {}).get("id")),
                    ("addresses", addresses),
                    ("vault", f"{vault.get('id')} ({vault.get('state', '')})"),
                    ("log level", data.get("log_level")),
                    ("registered", fmt.when(data.get("registered_time"))),
                ]
            )
        )

    s.emit(data, human)


@api_command(agents_app, "register")
def agents_register(
    s: Session,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Agent name (default: the host name).")
    ] = None,
    flavor: Annotated[
        str, typer.Option("--flavor", help="nova, rackspace_dedicated or rackspace_private_cloud.")
    ] = "nova",
    region: Annotated[str | None, typer.Option("--region", help="e.g. DFW.")] = None,
    address: Annotated[
        list[str] | None, typer.Option("--address", help="An IP address of the host (repeat).")
    ] = None,
) -> None:
    """Register this machine as an agent (its backups run on the workers, which act for it)."""
    import socket

    public_key, private_pem = new_key()
    body = registration(
        name or socket.gethostname(),
        flavor=flavor,
        region=region,
        addresses=address or [],
        public_key=public_key,
    )
    data = s.api.register_agent(body)
    key_path = config_path().parent / f"agent-{data['id']}.pem"
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.touch(mode=0o600)
    key_path.write_bytes(private_pem)

    def human() -> None:
        s.out.print(f"registered agent [bold]{data['id']}[/bold] ({data.get('name')})")
        s.err.print(
            f"its private RSA key is in {key_path}; its password (for an agent program): "
            f"{data.get('password')}"
        )

    s.emit(data, human)


# -- configurations ----------------------------------------------------------------------------
ConfigArg = Annotated[
    str,
    typer.Argument(help="Configuration id or name.", autocompletion=_complete("configurations")),
]
IncludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--include",
        "-i",
        help="Folder to back up (repeat); prefix file: for a single file, e.g. file:/etc/hosts.",
    ),
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option("--exclude", "-x", help="Folder (or file:PATH) inside an inclusion to skip."),
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
                _yes(c.get("enabled")),
                schedule_words(c.get("schedule")),
                fmt.when((backups.get("next") or {}).get("scheduled_time")),
                fmt.short_id(fmt.ref_id(backups.get("last_completed"))),
            )
        s.out.print(table if data["configurations"] else "no configurations yet")

    s.emit(data, human)


def _show_configuration(s: Session, data: dict[str, Any]) -> None:
    backups = data.get("backups") or {}
    s.out.print(
        _pairs(
            [
                ("id", data["id"]),
                ("name", data.get("name")),
                ("agent", fmt.ref_id(data.get("agent"))),
                ("enabled", _yes(data.get("enabled"))),
                ("deleted", _yes(data.get("deleted"))),
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
    data = s.api.get_configuration(_config_id(s, config))
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
            autocompletion=_complete("agents"),
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
        body["agent_id"] = _agent_id(s, agent) if agent else _only_agent(s)
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
    config_id = _config_id(s, config)
    changes: dict[str, Any] = {}
    if file:
        document = load_document(file)
        if "retention" in document:
            changes["/retention/days"] = (document.pop("retention") or {}).get("days")
        changes.update({f"/{key}": value for key, value in document.items()})
    if name is not None:
        changes["/name"] = name
    if enable is not None:
        changes["/enabled"] = enable
    if include:
        changes["/inclusions"] = path_items(include)
    if exclude or no_exclusions:
        changes["/exclusions"] = path_items(exclude or [])
    if schedule is not None or time_zone is not None:
        current = s.api.get_configuration(config_id).get("schedule") or {}
        zone = time_zone or current.get("time_zone") or _local_zone()
        if schedule is None:  # only the zone changes
            if not current:
                raise Fail("this configuration has no schedule; give --schedule too")
            schedule = current["recurrence"][0]
        changes["/schedule"] = schedule_from_words(schedule, zone)
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


@api_command(configs_app, "delete")
def configs_delete(
    s: Session,
    config: ConfigArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> int | None:
    """Delete a configuration (its backups stay readable; no new runs start)."""
    config_id = _config_id(s, config)
    if not yes and not typer.confirm(f"Delete configuration {config_id}?", default=False):
        s.err.print("nothing deleted")
        return EXIT_USAGE
    s.api.delete_configuration(config_id)
    s.emit(
        {"id": config_id, "deleted": True},
        lambda: s.out.print(f"deleted configuration {config_id}"),
    )
    return None


# -- backups ---------------------------------------------------------------------------------------
BackupArg = Annotated[str, typer.Argument(help="Backup id.", autocompletion=_complete("backups"))]


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
            autocompletion=_complete("configurations"),
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
    config_id = _config_id(s, config) if config else None
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
    data = s.api.get_backup(backup)

    def human() -> None:
        errors = data.get("errors") or {}
        s.out.print(
            _pairs(
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
                    ("restorable", _yes(data.get("restorable"))),
                    ("errors", f"{errors.get('count', 0)} {errors.get('reason') or ''}".strip()),
                    ("diagnostics", errors.get("diagnostics")),
                ]
            )
        )

    s.emit(data, human)


def _print_errors(s: Session, data: dict[str, Any]) -> None:
    items = data.get("list") or []
    if data.get("diagnostics"):
        s.out.print(str(data["diagnostics"]))
    if not items:
        if not data.get("diagnostics"):
            s.out.print("no errors")
        return
    table = Grid("#", "TYPE", "PATH", "DETAIL?")
    for item in items:
        exc = item.get("exception") or {}
        table.add_row(
            str(item.get("index")),
            str(item.get("type")),
            str(item.get("path")),
            str(exc.get("description") or item.get("description") or ""),
        )
    s.out.print(table)


@api_command(backups_app, "errors")
def backups_errors(s: Session, backup: BackupArg) -> None:
    """List the files a backup could not process."""
    data = s.api.backup_errors(backup)
    s.emit(data, lambda: _print_errors(s, data))


@api_command(backups_app, "stop")
def backups_stop(s: Session, backup: BackupArg) -> None:
    """Ask a backup to stop (it ends `stopped` within about a second)."""
    s.api.stop_backup(backup)
    data = s.api.get_backup(backup)
    s.emit(data, lambda: s.out.print(f"stop requested; backup {backup} is {data.get('state')}"))


WaitOpt = Annotated[
    bool, typer.Option("--wait", "-w", help="Follow it with a progress bar until it ends.")
]
IntervalOpt = Annotated[
    float, typer.Option("--interval", min=0.05, help="Seconds between polls while waiting.")
]


@api_command(backups_app, "start")
def backups_start(
    s: Session, config: ConfigArg, wait: WaitOpt = False, interval: IntervalOpt = 0.5
) -> int | None:
    """Start a backup of a configuration now."""
    data = s.api.start_backup(_config_id(s, config))
    if not wait:
        s.emit(data, lambda: s.out.print(f"backup [bold]{data['id']}[/bold] {data['state']}"))
        return None
    if not s.as_json:
        s.err.print(f"backup [bold]{data['id']}[/bold] started; Ctrl-C to stop it")
    return _follow(s, "backups", data["id"], interval)


@api_command(backups_app, "wait")
def backups_wait(s: Session, backup: BackupArg, interval: IntervalOpt = 0.5) -> int | None:
    """Follow a running backup until it ends (exit code as for start --wait)."""
    return _follow(s, "backups", backup, interval)


def _follow(s: Session, kind: str, run_id: str, interval: float) -> int:
    """Poll until the run is final; draw a live bar on a terminal, state lines otherwise."""
    watcher = Watcher(s.api, kind, run_id)
    live_console = s.err
    noun = "backup" if kind == "backups" else "restore"
    stop_asked = False
    while True:
        try:
            snap = _watch(watcher, live_console, interval)
            break
        except KeyboardInterrupt:
            if stop_asked:
                s.err.print(f"{noun} {run_id} keeps its stop request; not waiting any longer")
                return EXIT_INTERRUPTED
            if not _confirm_stop(s, noun, run_id):
                s.err.print(
                    f"{noun} {run_id} keeps running; follow it with "
                    f"`cloudbackup {kind} wait {run_id}`"
                )
                return EXIT_INTERRUPTED
            if kind == "backups":
                s.api.stop_backup(run_id)
            else:
                s.api.stop_restore(run_id)
            stop_asked = True
            s.err.print(f"stop requested; waiting for {noun} {run_id} to end")
    body = snap.body
    if s.as_json:
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
    else:
        s.out.print(summary(kind, body), soft_wrap=True)
    state = body.get("state")
    if state == "completed":
        return 0
    if state == "completed_with_errors":
        if not s.as_json:
            errors = (
                s.api.backup_errors(run_id) if kind == "backups" else s.api.restore_errors(run_id)
            )
            _print_errors(s, errors)
        return EXIT_WITH_ERRORS
    if state == "failed" and not s.as_json:
        errors = body.get("errors") or {}
        s.out.print(
            f"[red]failed:[/red] {errors.get('reason', '')} {errors.get('diagnostics', '')}"
        )
    return EXIT_RUN_FAILED


def _confirm_stop(s: Session, noun: str, run_id: str) -> bool:
    try:
        return typer.confirm(f"\nStop {noun} {run_id}?", default=False, err=True)
    except (typer.Abort, EOFError):
        return False


def _watch(watcher: Watcher, console: Console, interval: float) -> Snapshot:
    snap = watcher.poll()
    if console.is_terminal:
        with Live(render(snap), console=console, refresh_per_second=8, transient=True) as live:
            while not snap.final:
                time.sleep(interval)
                snap = watcher.poll()
                live.update(render(snap))
        return snap
    # Not a terminal (a log, a pipe, CI): one line per state change.
    last = ""
    while True:
        if snap.state != last:
            last = snap.state
            console.print(f"{snap.state}: {counters(snap.body)}", highlight=False)
        if snap.final:
            return snap
        time.sleep(interval)
        snap = watcher.poll()


# -- restores --------------------------------------------------------------------------------------
@api_command(restores_app, "list")
def restores_list(
    s: Session,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100, help="At most.")] = 20,
) -> None:
    """List restores, newest first."""
    data = s.api.list_restores(limit=limit)

    def human() -> None:
        items = data.get("restores") or []
        if not items:
            s.out.print("no restores")
            return
        table = Grid("ID", "BACKUP?", "DESTINATION", "STATE", "STARTED (UTC)?", "FILES?", "BYTES?")
        for r in items:
            table.add_row(
                r["id"],
                fmt.short_id(fmt.ref_id(r.get("backup"))),
                f"{fmt.short_id(fmt.ref_id(r.get('destination_agent')))}:"
                f"{r.get('destination_path') or '(original places)'}",
                r.get("state"),
                fmt.when(r.get("started_time")),
                str(r.get("files_restored", 0)),
                fmt.size(r.get("bytes_restored")),
            )
        s.out.print(table)

    s.emit(data, human)


@api_command(restores_app, "show")
def restores_show(s: Session, restore: Annotated[str, typer.Argument(help="Restore id.")]) -> None:
    """Show one restore."""
    data = s.api.get_restore(restore)

    def human() -> None:
        errors = data.get("errors") or {}
        s.out.print(
            _pairs(
                [
                    ("id", data["id"]),
                    ("backup", fmt.ref_id(data.get("backup"))),
                    ("destination agent", fmt.ref_id(data.get("destination_agent"))),
                    ("destination path", data.get("destination_path") or "(original places)"),
                    ("overwrite", _yes(data.get("overwrite_files"))),
                    ("state", data.get("state")),
                    ("started", fmt.when(data.get("started_time"))),
                    ("ended", fmt.when(data.get("ended_time"))),
                    (
                        "restored",
                        f"{data.get('files_restored')} files, "
                        f"{fmt.size(data.get('bytes_restored'))}",
                    ),
                    ("errors", f"{errors.get('count', 0)} {errors.get('reason') or ''}".strip()),
                ]
            )
        )

    s.emit(data, human)


@api_command(restores_app, "start")
def restores_start(
    s: Session,
    backup: BackupArg,
    to: Annotated[
        str | None,
        typer.Option("--to", help="Folder on the destination agent to restore into."),
    ] = None,
    original: Annotated[
        bool, typer.Option("--original", help="Put files back where they were (instead of --to).")
    ] = False,
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent",
            "-a",
            help="Destination agent id or name (default: the backup's).",
            autocompletion=_complete("agents"),
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing files.")] = False,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", "-i", help="Only this folder (or file:PATH) of the backup."),
    ] = None,
    exclude: ExcludeOpt = None,
    wait: WaitOpt = False,
    interval: IntervalOpt = 0.5,
) -> int | None:
    """Restore a backup's files (all, or --include parts) onto an agent."""
    if (to is None) == (not original):
        raise Fail("say where: --to FOLDER, or --original for the places the files came from")
    source = s.api.get_backup(backup)
    destination = _agent_id(s, agent) if agent else fmt.ref_id(source.get("agent"))
    if not destination:
        raise Fail("the backup names no agent; give --agent")
    body = restore_body(
        source["id"],
        destination,
        None if original else to,
        overwrite=overwrite,
        inclusions=path_items(include or []),
        exclusions=path_items(exclude or []),
    )
    data = s.api.start_restore(body)
    if not wait:
        s.emit(data, lambda: s.out.print(f"restore [bold]{data['id']}[/bold] {data['state']}"))
        return None
    if not s.as_json:
        s.err.print(f"restore [bold]{data['id']}[/bold] started; Ctrl-C to stop it")
    return _follow(s, "restores", data["id"], interval)


@api_command(restores_app, "stop")
def restores_stop(s: Session, restore: Annotated[str, typer.Argument(help="Restore id.")]) -> None:
    """Ask a restore to stop."""
    s.api.stop_restore(restore)
    data = s.api.get_restore(restore)
    s.emit(data, lambda: s.out.print(f"stop requested; restore {restore} is {data.get('state')}"))


@api_command(restores_app, "wait")
def restores_wait(
    s: Session,
    restore: Annotated[str, typer.Argument(help="Restore id.")],
    interval: IntervalOpt = 0.5,
) -> int | None:
    """Follow a running restore until it ends."""
    return _follow(s, "restores", restore, interval)


@api_command(restores_app, "errors")
def restores_errors(
    s: Session, restore: Annotated[str, typer.Argument(help="Restore id.")]
) -> None:
    """List the files a restore could not write."""
    data = s.api.restore_errors(restore)
    s.emit(data, lambda: _print_errors(s, data))


# -- events ----------------------------------------------------------------------------------------
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
    owner = chosen[0] if chosen else None
    if owner and owner[0] == "configurations":
        owner = ("configurations", _config_id(s, owner[1]))
    elif owner and owner[0] == "agents":
        owner = ("agents", _agent_id(s, owner[1]))
    return _events(s, owner, follow, limit, interval)


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


# -- login -----------------------------------------------------------------------------------------
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
    with _session(url, token, project, False, http=injected) as s:
        s.api.list_configurations()  # any read proves the token and the project (403/404 if not)
        path = config_path()
        write_file(path, {"url": url.rstrip("/"), "token": token, "project": project})
        s.err.print(f"saved to {path} (readable by you only)")
