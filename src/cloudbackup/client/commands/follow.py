"""``--wait`` and ``wait``: follow a backup or a restore until it ends, and say how it ended
in the exit code. Ctrl-C offers to stop the run."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

from cloudbackup.client.commands.session import (
    EXIT_INTERRUPTED,
    EXIT_RUN_FAILED,
    EXIT_WITH_ERRORS,
    Session,
)
from cloudbackup.client.commands.tables import print_errors
from cloudbackup.client.progress import Snapshot, Watcher, counters, render, summary

WaitOpt = Annotated[
    bool, typer.Option("--wait", "-w", help="Follow it with a progress bar until it ends.")
]
IntervalOpt = Annotated[
    float, typer.Option("--interval", min=0.05, help="Seconds between polls while waiting.")
]


def follow(s: Session, kind: str, run_id: str, interval: float) -> int:
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
            s.api.stop_run(kind, run_id)
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
            print_errors(s, errors)
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
