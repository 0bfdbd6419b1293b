"""`cloudbackup agent ...`: a remote agent (`register`, `run`: the API is all it reaches) or a
host worker inside the operator's trust boundary (`worker`, also spelt `agent --agent-id X`)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from cloudbackup.cli.ops import agent_worker

agent_app = typer.Typer(
    help="This host as an agent: `register` and `run` (over the API alone), or `worker`.",
    invoke_without_command=True,
)
err = Console(stderr=True)
StateDirOption = Annotated[
    Path, typer.Option("--state-dir", help="The agent's private folder (keys, id, password).")
]


@agent_app.callback()
def agent(
    ctx: typer.Context,
    agent_id: Annotated[
        str | None, typer.Option("--agent-id", help="`agent worker`'s option, kept here.")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Backups this host runs at once.")] = 1,
    release: Annotated[
        bool, typer.Option(help="Send the agent's work back to the shared queues, then exit.")
    ] = False,
) -> None:
    """Serve an agent from this host. `cloudbackup agent --agent-id X` is `agent worker`."""
    if ctx.invoked_subcommand is not None:
        return
    if agent_id is None:
        err.print(ctx.get_help())
        raise typer.Exit(code=2)
    agent_worker(agent_id, concurrency, release)


agent_app.command("worker")(agent_worker)


@agent_app.command("register")
def register_command(
    url: Annotated[str, typer.Option("--url", help="The API's base URL.")],
    project: Annotated[str, typer.Option("--project", help="The project (tenant) id.")],
    token: Annotated[str, typer.Option("--token", help="A token that may register agents.")],
    name: Annotated[str, typer.Option("--name", help="The agent's name.")],
    state_dir: StateDirOption,
) -> None:
    """Register this host (A1, with a new RSA key pair kept in --state-dir); prints its id."""
    import httpx

    from cloudbackup.agent.register import register
    from cloudbackup.agent.session import ApiRefused
    from cloudbackup.agent.state import StateDir, StateError

    try:
        identity = register(url, project, token, name, StateDir(state_dir))
    except (ApiRefused, StateError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from exc
    except httpx.TransportError as exc:
        err.print(f"[red]error:[/red] cannot reach the API at {url}: {exc}")
        raise typer.Exit(code=2) from exc
    err.print(f"registered agent {name!r}; its keys and password are in {state_dir}")
    typer.echo(identity.agent_id)


@agent_app.command("run")
def run_command(
    state_dir: StateDirOption,
    max_bps: Annotated[
        int, typer.Option("--max-bps", help="Cap on the bytes read per second (0: none).")
    ] = 0,
) -> None:
    """Serve the agent registered in --state-dir until SIGTERM/SIGINT, over the API alone."""
    from cloudbackup.agent.runner import AgentRunner
    from cloudbackup.agent.session import AgentSession
    from cloudbackup.agent.state import StateDir, StateError

    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    state = StateDir(state_dir)
    try:
        identity = state.identity()
    except StateError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from exc
    stop = threading.Event()
    session = AgentSession(identity)
    runner = AgentRunner(state, session, max_bps=max_bps)

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()
        if not runner.busy:
            raise KeyboardInterrupt  # out of the channel's long poll at once
        # A run in progress finishes and reports first.

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        runner.serve(stop)
    finally:
        session.close()
