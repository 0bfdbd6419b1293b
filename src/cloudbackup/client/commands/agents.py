"""`cloudbackup agents list|show|register`."""

from __future__ import annotations

import socket
from typing import Annotated

import typer

from cloudbackup.client import format as fmt
from cloudbackup.client.commands.arguments import AgentArg
from cloudbackup.client.commands.names import agent_id_of
from cloudbackup.client.commands.session import Session, api_command
from cloudbackup.client.commands.tables import Grid, pairs, yes_no
from cloudbackup.client.config import config_path
from cloudbackup.client.host import new_key, registration

agents_app = typer.Typer(
    help="Agents: the machines whose files are backed up.", no_args_is_help=True
)


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
                yes_no(a.get("enabled")),
                fmt.when(a.get("registered_time")),
            )
        s.out.print(table if data["agents"] else "no agents registered yet")

    s.emit(data, human)


@api_command(agents_app, "show")
def agents_show(s: Session, agent: AgentArg) -> None:
    """Show one agent."""
    data = s.api.get_agent(agent_id_of(s, agent))

    def human() -> None:
        host = data.get("host") or {}
        os_ = host.get("os") or {}
        vault = data.get("vault") or {}
        addresses = ", ".join(str(a.get("addr")) for a in host.get("addresses") or [])
        s.out.print(
            pairs(
                [
                    ("id", data["id"]),
                    ("name", data.get("name")),
                    ("version", data.get("version")),
                    ("enabled", yes_no(data.get("enabled"))),
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
