"""Agents and their embedded vaults: A1-A5 (spec §8, §9.1, §14.4, OQ-1, OQ-22, OQ-23).

An agent registers once (A1) and receives a password; only its SHA-256 is kept, like API tokens.
Every agent gets its own new, empty vault. Deletion is soft: the row stays (its backups keep
pointing at it) but the agent disappears from the API, and its configurations are deleted too.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from cloudbackup.domain.auth import create_token, hash_token
from cloudbackup.domain.channel_push import AgentChannel, tell_document_changed
from cloudbackup.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from cloudbackup.domain.events import record_event
from cloudbackup.domain.run_states import BACKUP_MACHINE, CLEANUP_MACHINE, RESTORE_MACHINE
from cloudbackup.store.db import Database
from cloudbackup.store.tables import (
    BACKUPS,
    CLEANUPS,
    RESTORES,
    Agent,
    Backup,
    Configuration,
    utcnow,
)

FLAVORS = ("nova", "rackspace_dedicated", "rackspace_private_cloud")
# vault.use_internal when the registration does not say (spec A1 flavor rules).
USE_INTERNAL_DEFAULT = {"nova": True, "rackspace_dedicated": False, "rackspace_private_cloud": True}
LOG_LEVELS = ("all", "trace", "debug", "info", "warn", "error", "fatal")
DEFAULT_LOG_LEVEL = "info"  # OQ-22
MAX_EXPONENT = 2**31 - 1  # stored in an INTEGER column
MAX_MACHINE_ID = 255  # indexed column
NOT_FOUND = "Agent not found."
REGION_NOT_EMPTY = "The vault property (region) cannot be updated, reason: vault is not empty."
# What keeps an agent from being deleted: its runs that are not final (a restore runs on its
# destination agent).
_RUNS_OF_AN_AGENT: list[tuple[str, sa.Column[str], sa.Column[str], list[str]]] = [
    ("backup", BACKUPS.c.agent_id, BACKUPS.c.state, sorted(map(str, BACKUP_MACHINE.active))),
    (
        "restore",
        RESTORES.c.destination_agent_id,
        RESTORES.c.state,
        sorted(map(str, RESTORE_MACHINE.active)),
    ),
    ("cleanup", CLEANUPS.c.agent_id, CLEANUPS.c.state, sorted(map(str, CLEANUP_MACHINE.active))),
]

_REGION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_DIGITS = re.compile(r"[0-9]{1,10}")


class Address(NamedTuple):
    """One of a host's addresses, stored as its JSON object (``_asdict``)."""

    version: int
    addr: str


@dataclass(frozen=True, slots=True)
class Registration:
    """An A1 body, flattened."""

    name: str
    version: str
    flavor: str
    region: str | None
    machine_id: str
    os_name: str
    os_version: str
    os_architecture: str
    fingerprint: str
    addresses: tuple[Address, ...]
    rsa_modulus: str
    rsa_exponent: int | str  # OQ-1: an integer, or the same digits as a string
    use_internal: bool | None = None


@dataclass(frozen=True, slots=True)
class AgentUpdate:
    """An A4 patch; ``None`` means "not changed"."""

    enabled: bool | None = None
    vault_region: str | None = None
    vault_use_internal: bool | None = None
    log_level: str | None = None


def region_problem(value: str, label: str) -> str | None:
    if _REGION.fullmatch(value):
        return None
    return f"{label} {value!r} is not a region identifier (1-64 letters, digits, '_', '-', '.')."


def log_level_problem(value: str) -> str | None:
    if value in LOG_LEVELS:
        return None
    return f"log_level must be one of {', '.join(LOG_LEVELS)}, not {value!r}."


def exponent_value(value: int | str) -> int | None:
    """The RSA exponent as an integer, or ``None`` when it is not a positive storable integer."""
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            return None
        value = int(value)
    return value if 0 < value <= MAX_EXPONENT else None


def _address_problems(reg: Registration) -> list[str]:
    """What is wrong with the host's addresses (each must parse as its IP version)."""
    problems: list[str] = []
    for index, address in enumerate(reg.addresses):
        if address.version not in (4, 6):
            problems.append(f"host.addresses[{index}].version must be 4 or 6.")
            continue
        try:
            parsed = ipaddress.ip_address(address.addr)
        except ValueError:
            parsed = None
        if parsed is None or parsed.version != address.version:
            problems.append(
                f"host.addresses[{index}].addr {address.addr!r} is not an "
                f"IPv{address.version} address."
            )
    return problems


def check_registration(reg: Registration) -> list[str]:
    """Every problem of a registration (spec A1 table and flavor rules)."""
    problems: list[str] = []
    required = (
        ("name", reg.name),
        ("version", reg.version),
        ("host.machine.id", reg.machine_id),
        ("host.os.name", reg.os_name),
        ("host.os.version", reg.os_version),
        ("host.os.architecture", reg.os_architecture),
        ("host.fingerprint", reg.fingerprint),
    )
    for label, value in required:
        if not value.strip():
            problems.append(f"{label} must not be empty.")
        elif "\x00" in value:
            problems.append(f"{label} must not contain NUL characters.")
    if len(reg.machine_id) > MAX_MACHINE_ID:
        problems.append(f"host.machine.id may be at most {MAX_MACHINE_ID} characters long.")
    if reg.flavor not in FLAVORS:
        problems.append(f"host.flavor must be one of {', '.join(FLAVORS)}, not {reg.flavor!r}.")
    elif reg.region is None and reg.flavor != "nova":
        problems.append(f"host.region is required for flavor {reg.flavor}; only nova may omit it.")
    if reg.region is not None and (problem := region_problem(reg.region, "host.region")):
        problems.append(problem)
    problems += _address_problems(reg)
    if not _HEX.fullmatch(reg.rsa_modulus):
        problems.append("rsa_public_key.modulus must be a hexadecimal string.")
    if exponent_value(reg.rsa_exponent) is None:
        problems.append(
            f"rsa_public_key.exponent must be a positive integer up to {MAX_EXPONENT} "
            "(a number, or its digits as a string)."
        )
    return problems


class AgentService:
    """Use cases of the agents resource. An update (A4), once committed, is pushed to a remote
    agent's ``channel`` so that it reads its working document (A7) again."""

    def __init__(self, db: Database, channel: AgentChannel | None = None) -> None:
        self.db = db
        self.channel = channel

    # -- A1 ---------------------------------------------------------------------------------
    def register(self, project_id: str, reg: Registration) -> tuple[Agent, str]:
        """Create the agent and its vault; returns the row and the password (shown once)."""
        problems = check_registration(reg)
        if problems:
            raise InvalidInput("Validation failed.", problems)
        exponent = exponent_value(reg.rsa_exponent)
        assert exponent is not None  # checked above
        password = str(uuid.uuid4())
        vault_id = str(uuid.uuid4())
        agent = Agent(
            id=str(uuid.uuid4()),
            project_id=project_id,
            name=reg.name,
            version=reg.version,
            host_flavor=reg.flavor,
            host_region=reg.region,
            host_machine_id=reg.machine_id,
            os_name=reg.os_name,
            os_version=reg.os_version,
            os_architecture=reg.os_architecture,
            fingerprint=reg.fingerprint,
            addresses=[a._asdict() for a in reg.addresses],
            enabled=True,
            rsa_modulus=reg.rsa_modulus,
            rsa_exponent=exponent,
            password_hash=hash_token(password),
            log_level=DEFAULT_LOG_LEVEL,
            vault_id=vault_id,
            vault_state="created",
            vault_flavor="swift",
            vault_encrypted=False,
            vault_region=reg.region,
            vault_use_internal=USE_INTERNAL_DEFAULT[reg.flavor]
            if reg.use_internal is None
            else reg.use_internal,
            registered_time=utcnow(),
            deleted=False,
        )
        with self.db.transaction() as session:
            session.add(agent)
            record_event(
                session,
                "agent_registered",
                project_id=project_id,
                agent_id=agent.id,
                members={
                    "agent": {
                        "id": agent.id,
                        "name": agent.name,
                        "host": {
                            "os": {
                                "name": agent.os_name,
                                "version": agent.os_version,
                                "architecture": agent.os_architecture,
                            }
                        },
                    },
                    "request_id": str(uuid.uuid4()),
                },
            )
        return agent, password

    # -- A2 / A3 ----------------------------------------------------------------------------
    def list_project(self, project_id: str, host_machine_id: str | None = None) -> list[Agent]:
        query = (
            sa.select(Agent)
            .where(col(Agent.project_id) == project_id, col(Agent.deleted).is_(False))
            .order_by(col(Agent.registered_time), col(Agent.id))
        )
        if host_machine_id is not None:
            if not storable(host_machine_id):
                return []
            query = query.where(col(Agent.host_machine_id) == host_machine_id)
        with self.db.transaction() as session:
            return list(session.execute(query).scalars())

    def get(self, project_id: str, agent_id: str) -> Agent:
        with self.db.transaction() as session:
            return live_agent(session, project_id, agent_id)

    # -- A4 ---------------------------------------------------------------------------------
    def update(self, project_id: str, agent_id: str, update: AgentUpdate) -> None:
        problems: list[str | None] = []
        if update.vault_region is not None:
            problems.append(region_problem(update.vault_region, "/vault/region"))
        if update.log_level is not None:
            problems.append(log_level_problem(update.log_level))
        if any(problems):
            raise InvalidInput("Validation failed.", [p for p in problems if p])
        with self.db.transaction() as session:
            agent = live_agent(session, project_id, agent_id, lock=True)
            if (
                update.vault_region is not None
                and update.vault_region != agent.vault_region
                and vault_has_data(session, agent.vault_id)
            ):
                raise Forbidden(REGION_NOT_EMPTY)
            if update.enabled is not None:
                agent.enabled = update.enabled
            if update.vault_region is not None:
                agent.vault_region = update.vault_region
            if update.vault_use_internal is not None:
                agent.vault_use_internal = update.vault_use_internal
            if update.log_level is not None:
                agent.log_level = update.log_level
            record_event(
                session,
                "configuration_changed",
                project_id=project_id,
                agent_id=agent.id,
                members={"agent": {"id": agent.id}, "request_id": str(uuid.uuid4())},
            )
        tell_document_changed(self.db, self.channel, agent_id, change="agent_updated")

    # -- A5 ---------------------------------------------------------------------------------
    def delete(self, project_id: str, agent_id: str) -> None:
        """OQ-23: refuse while a backup, restore or cleanup of the agent is not final; else
        retire the agent and its configurations."""
        with self.db.transaction() as session:
            agent = live_agent(session, project_id, agent_id, lock=True)
            for kind, agent_column, state_column, states in _RUNS_OF_AN_AGENT:
                active = session.execute(
                    sa.select(agent_column)
                    .where(agent_column == agent.id, state_column.in_(states))
                    .limit(1)
                ).first()
                if active is not None:
                    raise Conflict(
                        f"The agent has a {kind} that has not finished; stop it or wait for it "
                        "to end before deleting the agent."
                    )
            agent.deleted = True
            session.execute(
                sa.update(Configuration)
                .where(col(Configuration.agent_id) == agent.id)
                .values(deleted=True, next_scheduled_time=None, updated_at=utcnow())
            )


def live_agent(session: Session, project_id: str, agent_id: str, *, lock: bool = False) -> Agent:
    """The agent if it exists in this project and is not deleted; otherwise 404.

    Another project's agent and a deleted agent get the same answer as an unknown id.
    ``lock`` takes a row lock (PostgreSQL) so changes of one agent are serialised.
    """
    if not storable(agent_id):
        raise NotFound(NOT_FOUND)
    query = sa.select(Agent).where(
        col(Agent.id) == agent_id,
        col(Agent.project_id) == project_id,
        col(Agent.deleted).is_(False),
    )
    if lock:
        query = query.with_for_update()
    agent = session.execute(query).scalar_one_or_none()
    if agent is None:
        raise NotFound(NOT_FOUND)
    return agent


def storable(text: str) -> bool:
    """False for text no row can hold (PostgreSQL refuses NUL): look-ups answer "not found"."""
    return "\x00" not in text


def vault_has_data(session: Session, vault_id: str) -> bool:
    """A vault is not empty once some backup wrote a snapshot into it (spec A4)."""
    query = (
        sa.select(col(Backup.id))
        .where(col(Backup.vault_id) == vault_id, col(Backup.snapshot_id).is_not(None))
        .limit(1)
    )
    return session.execute(query).first() is not None


# -- A9: an agent trades its id and password for a token ---------------------------------------

AGENT_ROLE = "cloudbackup:creator"  # agents start, read and report; they never delete
BAD_CREDENTIALS = "The agent id or password is wrong."
FINGERPRINT_MISMATCH = (
    "The host fingerprint differs from the one the agent registered with: another host may be "
    "using this agent's identity."
)
# Compared against when the agent does not exist, so a miss costs the same time as a hit.
_NO_AGENT_HASH = hashlib.sha256(b"no such agent").hexdigest()


@dataclass(frozen=True, slots=True)
class AgentLogin:
    """An A9 body, flattened."""

    project_id: str
    agent_id: str
    password: str
    name: str
    version: str
    os_name: str
    os_version: str
    os_architecture: str
    fingerprint: str
    addresses: tuple[Address, ...]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    secret: str
    expires: datetime


def _digest(text: str) -> str:
    """SHA-256 like ``hash_token``, but total: text with lone surrogates hashes too."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class AgentTokenService:
    """A9: credentials checked in constant time; the token is bound to the agent's project."""

    def __init__(self, db: Database, ttl_seconds: int) -> None:
        self.db = db
        self.ttl = timedelta(seconds=ttl_seconds)

    def issue(self, project_id: str, login: AgentLogin) -> IssuedToken:
        """400 for a bad body, 401 for unknown/deleted/other-project agents and wrong passwords
        (one answer for all), 409 when the host fingerprint differs from the registered one."""
        problems = [] if login.project_id == project_id else ["project_id must be the path's."]
        problems += check_registration(
            Registration(
                name=login.name,
                version=login.version,
                flavor="nova",
                region=None,
                machine_id="-",
                os_name=login.os_name,
                os_version=login.os_version,
                os_architecture=login.os_architecture,
                fingerprint=login.fingerprint,
                addresses=login.addresses,
                rsa_modulus="0",
                rsa_exponent=1,
            )
        )
        if problems:
            raise InvalidInput("Validation failed.", problems)
        with self.db.transaction() as session:
            agent = None
            if storable(login.agent_id):
                agent = session.execute(
                    sa.select(Agent).where(
                        col(Agent.id) == login.agent_id,
                        col(Agent.project_id) == project_id,
                        col(Agent.deleted).is_(False),
                    )
                ).scalar_one_or_none()
            stored = agent.password_hash if agent is not None else _NO_AGENT_HASH
            password_ok = hmac.compare_digest(stored.encode(), _digest(login.password).encode())
            if agent is None or not password_ok:
                raise Unauthenticated(BAD_CREDENTIALS)
            same_host = hmac.compare_digest(
                agent.fingerprint.encode("utf-8", "surrogatepass"),
                login.fingerprint.encode("utf-8", "surrogatepass"),
            )
            if not same_host:
                raise Conflict(FINGERPRINT_MISMATCH)
            # The agent reports what it runs now (spec A9 [inf]): keep A2/A3 true after upgrades.
            agent.name = login.name
            agent.version = login.version
            agent.os_name = login.os_name
            agent.os_version = login.os_version
            agent.os_architecture = login.os_architecture
            agent.addresses = [a._asdict() for a in login.addresses]
            secret, row = create_token(
                session, project_id, [AGENT_ROLE], ttl=self.ttl, agent_id=agent.id
            )
        assert row.expires_at is not None
        return IssuedToken(secret, row.expires_at)
