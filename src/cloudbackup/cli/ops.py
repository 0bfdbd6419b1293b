"""Operator commands: `cloudbackup queues ...`, `cloudbackup roots ...` and `cloudbackup agent
worker --agent-id ...`.

They talk to the database and the broker named by the settings directly (no token needed: they
run where the service's settings are), through the same ``QueueAdmin`` as `/v2/admin/queues` and
the same ``AgentRootsService`` as `/v2/admin/agents/{agent_id}/roots`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table

from cloudbackup.domain.errors import DomainError
from cloudbackup.settings import Settings, get_settings

queues_app = typer.Typer(
    help="Queues and workers: depth, ages, pause/resume, concurrency.", invoke_without_command=True
)
roots_app = typer.Typer(
    help="Which host folders an agent's hosted backups, restores and browsing may touch."
)
out = Console()
err = Console(stderr=True)


def register_operations(app: typer.Typer) -> None:
    """Add the operator commands to the `cloudbackup` command."""
    from cloudbackup.cli.agent import agent_app

    app.add_typer(queues_app, name="queues", rich_help_panel="Operator")
    app.add_typer(roots_app, name="roots", rich_help_panel="Operator")
    app.add_typer(agent_app, name="agent", rich_help_panel="Operator")


def _admin(settings: Settings) -> Any:
    from cloudbackup.queue.admin import QueueAdmin
    from cloudbackup.store.db import Database

    return QueueAdmin(Database(settings.resolved_database_url), settings)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=2)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


@queues_app.callback()
def queues_overview(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Without a sub-command: every queue and every worker."""
    if ctx.invoked_subcommand is not None:
        return
    from cloudbackup.api.controllers.admin import queue_out, worker_out

    admin = _admin(get_settings())
    try:
        queues, workers = admin.queues(), admin.workers()
    except DomainError as exc:
        raise _fail(exc.message) from exc
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "queues": [queue_out(q) for q in queues],
                    "workers": [worker_out(w) for w in workers],
                },
                indent=2,
            )
        )
        return
    table = Table(title="queues")
    for column in ("queue", "depth", "oldest", "running", "waiting", "paused", "limit", "workers"):
        table.add_column(column)
    for q in queues:
        table.add_row(
            q.name,
            "?" if q.depth is None else str(q.depth),
            _age(q.oldest_age_seconds),
            str(q.running),
            f"{q.waiting} ({_age(q.oldest_waiting_seconds)})" if q.waiting else "0",
            "yes" if q.paused else "",
            "" if q.concurrency is None else str(q.concurrency),
            str(len(q.consumers)),
        )
    out.print(table)
    table = Table(title="workers")
    for column in ("worker", "online", "queues", "slots", "running"):
        table.add_column(column)
    for w in workers:
        table.add_row(
            w.hostname,
            "yes" if w.online else "NO",
            ", ".join(w.queues),
            str(w.concurrency),
            "; ".join(f"{r.get('task')} {r.get('args')}" for r in w.running) or "-",
        )
    out.print(table)


def _change(name: str, **changes: Any) -> None:
    from cloudbackup.domain.queue_admin import QueueChange

    admin = _admin(get_settings())
    try:
        info = admin.update(name, QueueChange(**changes))
    except DomainError as exc:
        raise _fail(" ".join([exc.message, *exc.errors])) from exc
    limit = "none" if info.concurrency is None else info.concurrency
    err.print(f"queue {info.name}: paused={info.paused} concurrency={limit}")


@queues_app.command("pause")
def pause(name: Annotated[str, typer.Argument(help="Queue name, e.g. backups.scheduled.")]) -> None:
    """Stop starting runs from a queue (running ones finish; new ones wait, visibly)."""
    _change(name, paused=True)


@queues_app.command("resume")
def resume(name: Annotated[str, typer.Argument(help="Queue name.")]) -> None:
    """Start runs from a paused queue again; the runs that waited are offered at once."""
    _change(name, paused=False)


@queues_app.command("concurrency")
def concurrency(
    name: Annotated[str, typer.Argument(help="Queue name.")],
    limit: Annotated[str, typer.Argument(help="Most runs at once from this queue, or `none`.")],
) -> None:
    """Change how many backups from a queue may run at once, across all workers."""
    if limit.lower() == "none":
        _change(name, clear_concurrency=True)
        return
    if not (limit.isascii() and limit.isdigit()):
        raise _fail(f"limit must be a number from 1 to 10000 or `none`, not {limit!r}")
    _change(name, concurrency=int(limit))


def agent_worker(
    agent_id: Annotated[str, typer.Option("--agent-id", help="Id of a registered agent.")],
    concurrency: Annotated[int, typer.Option(help="Backups this host runs at once.")] = 1,
    release: Annotated[
        bool, typer.Option(help="Send the agent's work back to the shared queues, then exit.")
    ] = False,
) -> None:
    """Run this host's worker for one agent: once it consumes, the agent's backups go to the
    agent's own queue.

    The worker pins the agent when it is ready (a worker that never starts pins nothing). The
    pin is stored and survives restarts; while the host worker is down, the agent's work waits
    in its queue (a shared worker cannot read this host's files). `--release` undoes it.
    """
    from cloudbackup.queue.broker_health import broker_ping
    from cloudbackup.queue.names import QueueNames
    from cloudbackup.store import agent_pins
    from cloudbackup.store.db import Database

    settings = get_settings()
    db = Database(settings.resolved_database_url)
    if release:
        released = agent_pins.unpin_agent(db, agent_id)
        err.print(
            f"agent {agent_id} "
            + ("uses the shared queues again" if released else "was not pinned")
        )
        return
    if not agent_pins.live_agent_ids(db, [agent_id]):
        raise _fail(f"no registered agent with id {agent_id!r}")
    if concurrency < 1:
        raise _fail("--concurrency must be at least 1")
    db.dispose()
    _check_broker(broker_ping(settings), settings.broker_url, agent_id)
    queues = QueueNames(settings.backup_queue).for_agent(agent_id)
    err.print(f"agent {agent_id}: consuming {', '.join(queues)} (pinned once the worker is ready)")
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "cloudbackup.workers.app",
        "worker",
        "--loglevel",
        settings.log_level,
        "--concurrency",
        str(concurrency),
        "--queues",
        ",".join(queues),
        "--hostname",
        f"agent-{agent_id}@%h",
    ]
    os.execv(sys.executable, command)


def _check_broker(ping: Callable[[], bool], url: str, agent_id: str) -> None:
    """Fail at once, before anything is pinned, when the broker does not answer (Celery would
    retry for minutes)."""
    try:
        answered = ping()
    except Exception as exc:  # any failure to connect is the same answer: not reachable
        answered, reason = False, f" ({str(exc).rstrip('.')})"
    else:
        reason = ""
    if not answered:
        parts = urlsplit(url)
        raise _fail(
            f"the broker at {parts.hostname}:{parts.port or '-'} does not answer{reason}; "
            f"agent {agent_id} is not pinned"
        )


@queues_app.command("schedule-lag")
def schedule_lag(
    fail_above: Annotated[
        float, typer.Option(help="Exit 1 when a schedule has been overdue longer (seconds).")
    ] = 0.0,
) -> None:
    """How long the most overdue schedule has waited to fire (beat's liveness check)."""
    from cloudbackup.domain import scheduler
    from cloudbackup.store.db import Database

    settings = get_settings()
    db = Database(settings.resolved_database_url, connect_timeout=settings.database_connect_timeout)
    try:
        lag = scheduler.schedule_lag(db)
    except DomainError as exc:
        raise _fail(exc.message) from exc
    finally:
        db.dispose()
    typer.echo(f"{lag:.1f}")
    if fail_above and lag > fail_above:
        raise typer.Exit(code=1)


# -- an agent's roots ---------------------------------------------------------------------------


def _roots(change: Callable[[Any], Any]) -> None:
    from cloudbackup.api.schemas.admin import roots_out
    from cloudbackup.domain.roots import AgentRootsService, RootsPolicy
    from cloudbackup.store.db import Database

    settings = get_settings()
    db = Database(settings.resolved_database_url)
    try:
        view = change(AgentRootsService(db, RootsPolicy.from_settings(settings)))
    except DomainError as exc:
        raise _fail(" ".join([exc.message, *exc.errors])) from exc
    finally:
        db.dispose()
    typer.echo(json.dumps(roots_out(view), indent=2))


@roots_app.command("show")
def roots_show(agent_id: Annotated[str, typer.Argument(help="Id of a registered agent.")]) -> None:
    """The agent's own roots (null: CLOUDBACKUP_ALLOWED_ROOTS applies) and what is refused."""
    _roots(lambda service: service.get(agent_id))


@roots_app.command("set")
def roots_set(
    agent_id: Annotated[str, typer.Argument(help="Id of a registered agent.")],
    folders: Annotated[list[str], typer.Argument(help="Absolute folders, replacing the old.")],
) -> None:
    """Let the agent's hosted runs touch only these folders (the service's files never)."""
    _roots(lambda service: service.set(agent_id, folders))


@roots_app.command("clear")
def roots_clear(agent_id: Annotated[str, typer.Argument(help="Id of a registered agent.")]) -> None:
    """Drop the agent's own roots: CLOUDBACKUP_ALLOWED_ROOTS applies again."""
    _roots(lambda service: service.set(agent_id, None))
