"""`cloudbackup verify`: read back a vault's packs and name the files any damage touches."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cloudbackup.settings import get_settings

err = Console(stderr=True)
out = Console()


def register_engine(app: typer.Typer) -> None:
    """Add the vault commands to the `cloudbackup` CLI."""
    app.command("verify")(verify_command)


def verify_command(
    vault_id: Annotated[str, typer.Argument(help="Id of the vault (an agent's vault.id).")],
    sample: Annotated[
        float,
        typer.Option(
            "--sample",
            help="Share of the packs to read back, above 0 and at most 1 (1 = all).",
        ),
    ] = 1.0,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the random sample (to repeat one).")
    ] = None,
) -> None:
    """Check a vault: decrypt, decompress and re-hash every chunk of all (or a sample of) its
    packs. Exits 1 and lists the damaged chunks and the files using them if any is found."""
    from cloudbackup.engine import VaultError, open_vault, verify

    if not 0.0 < sample <= 1.0:
        err.print("[red]error:[/red] --sample must be above 0 and at most 1")
        raise typer.Exit(2)
    try:
        vault = open_vault(get_settings(), vault_id, create=False)
    except VaultError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    with Progress(
        TextColumn("verifying packs"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[damaged]} damaged"),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        task = progress.add_task("verify", total=None, damaged=0)

        def on_progress(p):  # type: ignore[no-untyped-def]
            progress.update(task, completed=p.packs_done, total=p.packs_total, damaged=p.damaged)

        try:
            report = verify(vault, sample_fraction=sample, on_progress=on_progress, seed=seed)
        except VaultError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
    out.print(
        f"checked {report.packs_checked} of {report.packs_total} packs, "
        f"{report.chunks_checked} chunks, {report.bytes_checked} bytes, "
        f"{report.snapshots_checked} snapshots"
    )
    if report.ok:
        out.print("no damage found")
        return
    out.print(f"[red]{len(report.damaged)} damaged chunk(s):[/red]")
    for damage in report.damaged:
        where = f" in pack {damage.pack}" if damage.pack else ""
        out.print(f"chunk {damage.chunk_id or '-'}{where}: {damage.reason}")
        for file in damage.files:
            out.print(f"  snapshot {file.snapshot_id}: {file.path}", highlight=False)
    raise typer.Exit(1)
