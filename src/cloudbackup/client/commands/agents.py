"""`cloudbackup agents list|show|register|encrypt|verify-password`."""

from __future__ import annotations

import socket
import sys
from typing import Annotated

import typer

from cloudbackup.client import format as fmt
from cloudbackup.client import vault_requests
from cloudbackup.client.commands.arguments import AgentArg
from cloudbackup.client.commands.names import agent_id_of
from cloudbackup.client.commands.session import Fail, Session, api_command
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


StdinOption = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password(s) from stdin, one a line.")
]
WaitOption = Annotated[
    float, typer.Option("--wait", help="Seconds to wait for the agent's answer.")
]


def read_passwords(from_stdin: bool, prompts: list[str]) -> list[str]:
    """The passwords asked for: one stdin line each, or prompted (typed twice when new)."""
    if from_stdin:
        lines = sys.stdin.read().splitlines()
        if len(lines) < len(prompts) or not all(lines[: len(prompts)]):
            raise Fail(f"--password-stdin needs {len(prompts)} non-empty line(s) on stdin")
        return lines[: len(prompts)]
    answers = []
    for prompt in prompts:
        confirm = prompt.startswith("New")
        answers.append(str(typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)))
    return answers


@api_command(agents_app, "encrypt")
def agents_encrypt(
    s: Session, agent: AgentArg, password_stdin: StdinOption = False, wait: WaitOption = 120.0
) -> int:
    """Set the password of the agent's vault (V2), or change it when it has one; wait for V4."""
    agent_id = agent_id_of(s, agent)
    data = s.api.get_agent(agent_id)
    encrypted = bool((data.get("vault") or {}).get("encrypted"))
    prompts = (
        ["Current vault password", "New vault password"] if encrypted else ["New vault password"]
    )
    passwords = read_passwords(password_stdin, prompts)
    old, new = (passwords[0], passwords[1]) if encrypted else (None, passwords[0])
    request_id = vault_requests.ask(
        s.api, agent_id, vault_requests.ENCRYPTION, vault_requests.encryption_body(data, new, old)
    )
    result = vault_requests.wait_result(
        s.api, agent_id, vault_requests.ENCRYPTION, request_id, timeout=wait
    )

    def human() -> None:
        what = "changed" if encrypted else "enabled"
        if result.get("succeeded"):
            s.out.print(f"vault encryption {what} for agent {agent_id}")
        else:
            s.err.print(f"the agent could not set the password ({what}): check the old one")

    s.emit(result, human)
    return 0 if result.get("succeeded") else 1


@api_command(agents_app, "verify-password")
def agents_verify_password(
    s: Session, agent: AgentArg, password_stdin: StdinOption = False, wait: WaitOption = 120.0
) -> int:
    """Check a password against the agent's vault (V5); wait for V7."""
    agent_id = agent_id_of(s, agent)
    data = s.api.get_agent(agent_id)
    [password] = read_passwords(password_stdin, ["Vault password"])
    request_id = vault_requests.ask(
        s.api,
        agent_id,
        vault_requests.VERIFICATION,
        vault_requests.verification_body(data, password),
    )
    result = vault_requests.wait_result(
        s.api, agent_id, vault_requests.VERIFICATION, request_id, timeout=wait
    )

    def human() -> None:
        s.out.print("the password is valid" if result.get("valid") else "the password is NOT valid")

    s.emit(result, human)
    return 0 if result.get("valid") else 1
