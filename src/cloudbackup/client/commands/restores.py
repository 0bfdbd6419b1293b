"""`cloudbackup restores list|show|start|stop|wait|errors`: restores through the API."""

from __future__ import annotations

from typing import Annotated

import typer

from cloudbackup.client import format as fmt
from cloudbackup.client.api import restore_body
from cloudbackup.client.commands.agents import read_passwords
from cloudbackup.client.commands.arguments import BackupArg, ExcludeOpt, complete_ids
from cloudbackup.client.commands.follow import IntervalOpt, WaitOpt, follow
from cloudbackup.client.commands.names import agent_id_of, backup_id_of, restore_id_of
from cloudbackup.client.commands.session import Fail, Session, api_command
from cloudbackup.client.commands.tables import Grid, pairs, print_errors, yes_no
from cloudbackup.client.drafts import path_items
from cloudbackup.client.vault_password import encrypt_password

restores_app = typer.Typer(
    help="Restores through the API (a worker writes the files on the destination agent).",
    no_args_is_help=True,
)

RestoreArg = Annotated[str, typer.Argument(help="Restore id (or its first characters).")]


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
def restores_show(s: Session, restore: RestoreArg) -> None:
    """Show one restore."""
    data = s.api.get_restore(restore_id_of(s, restore))

    def human() -> None:
        errors = data.get("errors") or {}
        s.out.print(
            pairs(
                [
                    ("id", data["id"]),
                    ("backup", fmt.ref_id(data.get("backup"))),
                    ("destination agent", fmt.ref_id(data.get("destination_agent"))),
                    ("destination path", data.get("destination_path") or "(original places)"),
                    ("overwrite", yes_no(data.get("overwrite_files"))),
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
            autocompletion=complete_ids("agents"),
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing files.")] = False,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", "-i", help="Only this folder (or file:PATH) of the backup."),
    ] = None,
    exclude: ExcludeOpt = None,
    password: Annotated[
        bool,
        typer.Option(
            "--password",
            help="Ask for the source vault's password (onto another remote agent), sent "
            "encrypted with the destination agent's public key.",
        ),
    ] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="As --password, read from stdin.")
    ] = False,
    wait: WaitOpt = False,
    interval: IntervalOpt = 0.5,
) -> int | None:
    """Restore a backup's files (all, or --include parts) onto an agent."""
    if (to is None) == (not original):
        raise Fail("say where: --to FOLDER, or --original for the places the files came from")
    source = s.api.get_backup(backup_id_of(s, backup))
    destination = agent_id_of(s, agent) if agent else fmt.ref_id(source.get("agent"))
    if not destination:
        raise Fail("the backup names no agent; give --agent")
    sealed = None
    if password or password_stdin:
        [secret] = read_passwords(password_stdin, ["Source vault password"])
        key = s.api.get_agent(destination)["rsa_public_key"]
        sealed = encrypt_password(key, secret)  # only the destination agent reads it
    body = restore_body(
        source["id"],
        destination,
        None if original else to,
        overwrite=overwrite,
        inclusions=path_items(include or []),
        exclusions=path_items(exclude or []),
        encrypted_password_hex=sealed,
    )
    data = s.api.start_restore(body)
    if not wait:
        s.emit(data, lambda: s.out.print(f"restore [bold]{data['id']}[/bold] {data['state']}"))
        return None
    if not s.as_json:
        s.err.print(f"restore [bold]{data['id']}[/bold] started; Ctrl-C to stop it")
    return follow(s, "restores", data["id"], interval)


@api_command(restores_app, "stop")
def restores_stop(s: Session, restore: RestoreArg) -> None:
    """Ask a restore to stop."""
    restore = restore_id_of(s, restore)
    s.api.stop_restore(restore)
    data = s.api.get_restore(restore)
    s.emit(data, lambda: s.out.print(f"stop requested; restore {restore} is {data.get('state')}"))


@api_command(restores_app, "wait")
def restores_wait(s: Session, restore: RestoreArg, interval: IntervalOpt = 0.5) -> int | None:
    """Follow a running restore until it ends."""
    return follow(s, "restores", restore_id_of(s, restore), interval)


@api_command(restores_app, "errors")
def restores_errors(s: Session, restore: RestoreArg) -> None:
    """List the files a restore could not write."""
    data = s.api.restore_errors(restore_id_of(s, restore))
    s.emit(data, lambda: print_errors(s, data))
