"""Agent request/response structs (spec §8.1, §9.1) and their mapping from table rows.

Field order is the order of the spec's agent table; msgspec keeps it when encoding.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from litestar import Request

from cloudbackup.api.body import decode_object
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.schemas.common import Link, from_row
from cloudbackup.api.schemas.times import iso_z
from cloudbackup.domain.agents import Address, AgentLogin, IssuedToken, Registration
from cloudbackup.store.tables import Agent

T = TypeVar("T")


# -- what A1 sends and A3 shows alike ---------------------------------------------------------


class OsOut(msgspec.Struct):
    name: str
    version: str
    architecture: str


class AddressOut(msgspec.Struct):
    version: int
    addr: str


# -- A1 request -------------------------------------------------------------------------------


class MachineIn(msgspec.Struct, forbid_unknown_fields=True):
    id: str


class OsIn(OsOut, forbid_unknown_fields=True):
    """A1's ``host.os``: the members the agent shows (A3), and no others."""


class AddressIn(AddressOut, forbid_unknown_fields=True):
    """One of A1's ``host.addresses``: as A3 shows it, and no other members."""


class HostIn(msgspec.Struct, forbid_unknown_fields=True):
    flavor: str
    region: str | None  # the key is required; null only for nova (OQ-22)
    machine: MachineIn
    os: OsIn
    fingerprint: str
    addresses: list[AddressIn]


class RsaKeyIn(msgspec.Struct, forbid_unknown_fields=True):
    modulus: str
    exponent: int | str  # OQ-1


class VaultIn(msgspec.Struct, forbid_unknown_fields=True):
    use_internal: bool | msgspec.UnsetType = msgspec.UNSET


class RegisterAgent(msgspec.Struct, forbid_unknown_fields=True):
    """A1 request body."""

    name: str
    version: str
    host: HostIn
    rsa_public_key: RsaKeyIn
    vault: VaultIn | msgspec.UnsetType = msgspec.UNSET


# What A1 and A9 both require of the agent, in the order the errors list them.
IDENTITY_REQUIRED = {
    "name": "Name is required.",
    "version": "Version is required.",
    "host": "Host is required.",
}
REGISTER_REQUIRED = {**IDENTITY_REQUIRED, "rsa_public_key": "RSA public key is required."}


def host_members(host: HostIn | LoginHostIn) -> dict[str, Any]:
    """The members of a registration (A1) or login (A9) that come from its ``host``."""
    return {
        "os_name": host.os.name,
        "os_version": host.os.version,
        "os_architecture": host.os.architecture,
        "fingerprint": host.fingerprint,
        "addresses": tuple(Address(a.version, a.addr) for a in host.addresses),
    }


def parse_registration(request: Request[Any, Any, Any], body: bytes) -> Registration:
    data = decode_object(request, body, RegisterAgent, REGISTER_REQUIRED)
    host = data.host
    use_internal = None
    if not isinstance(data.vault, msgspec.UnsetType) and not isinstance(
        data.vault.use_internal, msgspec.UnsetType
    ):
        use_internal = data.vault.use_internal
    return Registration(
        name=data.name,
        version=data.version,
        flavor=host.flavor,
        region=host.region,
        machine_id=host.machine.id,
        **host_members(host),
        rsa_modulus=data.rsa_public_key.modulus,
        rsa_exponent=data.rsa_public_key.exponent,
        use_internal=use_internal,
    )


# -- responses --------------------------------------------------------------------------------


class MachineOut(msgspec.Struct):
    id: str
    links: list[Link]


class HostOut(msgspec.Struct):
    flavor: str
    region: str | None
    machine: MachineOut
    os: OsOut
    addresses: list[AddressOut]


class RsaKeyOut(msgspec.Struct):
    modulus: str
    exponent: int


class VaultOut(msgspec.Struct):
    id: str
    name: str
    state: str
    flavor: str
    encrypted: bool
    region: str | None
    use_internal: bool
    links: list[Link]


class AgentOut(msgspec.Struct, kw_only=True):
    project_id: str
    id: str
    password: str | msgspec.UnsetType = msgspec.UNSET  # A1 only
    name: str
    version: str
    host: HostOut
    enabled: bool
    rsa_public_key: RsaKeyOut
    vault: VaultOut
    log_level: str
    registered_time: str
    links: list[Link]


class AgentList(msgspec.Struct):
    agents: list[AgentOut]


AGENT_LINK_RELS = ("activities", "configuration", "configurations", "events", "logfiles", "status")


def registered_time(value: datetime) -> str:
    """``registered_time`` keeps the reference's ``+00:00`` form with microseconds (OQ-18)."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def vault_name(vault_id: str) -> str:
    return f"phoenix_{vault_id}"


def agent_out(row: Agent, links: LinkBuilder, password: str | None = None) -> AgentOut:
    # Our vault is a folder on the server: both endpoints name the vault's place in this API
    # rather than a filesystem path.
    vault_href = ("agents", row.id, "vault")
    return AgentOut(
        project_id=row.project_id,
        id=row.id,
        password=msgspec.UNSET if password is None else password,
        name=row.name,
        version=row.version,
        host=HostOut(
            flavor=row.host_flavor,
            region=row.host_region,
            machine=MachineOut(
                id=row.host_machine_id,
                links=[
                    links.link("full", "agents", query={"host_machine_id": row.host_machine_id})
                ],
            ),
            os=OsOut(name=row.os_name, version=row.os_version, architecture=row.os_architecture),
            addresses=[AddressOut(a["version"], a["addr"]) for a in row.addresses or []],
        ),
        enabled=row.enabled,
        rsa_public_key=RsaKeyOut(modulus=row.rsa_modulus, exponent=row.rsa_exponent),
        vault=from_row(
            VaultOut,
            row,
            "vault_",
            name=vault_name(row.vault_id),
            links=[links.link("publicURL", *vault_href), links.link("internalURL", *vault_href)],
        ),
        log_level=row.log_level,
        registered_time=registered_time(row.registered_time),
        links=[
            links.link("self", "agents", row.id),
            *(links.link(rel, "agents", row.id, rel) for rel in AGENT_LINK_RELS),
        ],
    )


# -- A9 ---------------------------------------------------------------------------------------


class LoginHostIn(msgspec.Struct, forbid_unknown_fields=True):
    os: OsIn
    fingerprint: str
    addresses: list[AddressIn]


class AgentLoginIn(msgspec.Struct, forbid_unknown_fields=True):
    """A9 request body."""

    project_id: str
    id: str
    password: str
    name: str
    version: str
    host: LoginHostIn


LOGIN_REQUIRED = {
    "project_id": "Project ID is required.",
    "id": "Agent ID is required.",
    "password": "Password is required.",
    **IDENTITY_REQUIRED,
}


def parse_login(request: Request[Any, Any, Any], body: bytes) -> AgentLogin:
    data = decode_object(request, body, AgentLoginIn, LOGIN_REQUIRED)
    return AgentLogin(
        project_id=data.project_id,
        agent_id=data.id,
        password=data.password,
        name=data.name,
        version=data.version,
        **host_members(data.host),
    )


class TokenOut(msgspec.Struct):
    id: str
    expires: str


class AgentTokenOut(msgspec.Struct):
    """A9 response body."""

    token: TokenOut


def agent_token_out(issued: IssuedToken) -> AgentTokenOut:
    return AgentTokenOut(TokenOut(id=issued.secret, expires=iso_z(issued.expires) or ""))
