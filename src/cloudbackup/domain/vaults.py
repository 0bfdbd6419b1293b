"""Vault operations: the move V1 (OQ-24), and the documented refusals of the encryption and
password-verification requests V2/V5 (spec §9, §14.7, OQ-16).

A vault is identified by its id everywhere its data is addressed (backup rows, the vault folder
or bucket prefix, its key file), so moving it to another agent is a change of owner only: the
backups that wrote into it stay restorable, and they count as its data for A4 and V1.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.domain.activities import agent_is_busy
from cloudbackup.domain.agents import USE_INTERNAL_DEFAULT, live_agent, storable, vault_has_data
from cloudbackup.domain.channel_push import AgentChannel, tell_document_changed
from cloudbackup.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from cloudbackup.domain.events import record_event
from cloudbackup.engine import Vault, open_vault
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.run_repositories import vault_encrypted
from cloudbackup.store.tables import AGENTS, Agent

SOURCE_NOT_IN_PROJECT = "The source agent is not an agent of this project."
SOURCE_IS_TARGET = "source_agent_id names this agent; its vault is already here."
ENCRYPTED_VAULT = "The vault to move is encrypted; encrypted vaults cannot be moved."
TARGET_HAS_DATA = (
    "This agent's vault already holds backups; a vault can only move to an agent whose vault "
    "is empty."
)
AGENT_BUSY = (
    "A backup, restore or cleanup of one of the two agents has not finished; wait for it (or "
    "stop it) before moving the vault."
)
OLD_PASSWORD_UNENCRYPTED = "An old password was supplied, but the vault is unencrypted."
NO_OLD_PASSWORD_ENCRYPTED = (
    "The vault is encrypted: old_encrypted_password_hex must be the current password."
)
NOT_ENCRYPTED = "Encryption is not enabled for this agent's vault."

_HEX = re.compile(r"[0-9a-fA-F]+")
_VAULT_COLUMNS = (
    "vault_id",
    "vault_state",
    "vault_flavor",
    "vault_encrypted",
    "vault_region",
    "vault_use_internal",
)


@dataclass(frozen=True, slots=True)
class EncryptionRequest:
    """A V2 body; ``old_password_hex`` is ``None`` when encryption is being enabled."""

    old_password_hex: str | None
    new_password_hex: str


@dataclass(frozen=True, slots=True)
class VerificationRequest:
    """A V5 body; ``agent_id`` names the agent whose vault to check (``None``: this one)."""

    password_hex: str
    agent_id: str | None


def hex_problem(name: str, value: str) -> str | None:
    """OQ-16: hex digits, whitespace ignored (the reference's examples are line-wrapped)."""
    if _HEX.fullmatch("".join(value.split())):
        return None
    return f"{name} must be hexadecimal digits."


def open_service_vault(
    db: Database, settings: Settings, vault_id: str, *, create: bool = True
) -> Vault:
    """The vault a worker backs up into or reads from: the one place the service opens vaults.

    Its password is its key file (``engine.open_vault``); the agent row's ``vault_encrypted``
    is passed along so a vault recorded as encrypted is never opened or created as plaintext.
    """
    with db.transaction() as session:
        recorded = vault_encrypted(session, vault_id)
    return open_vault(settings, vault_id, create=create, recorded_encrypted=recorded)


class VaultService:
    """Use cases of an agent's vault. A migration (V1), once committed, is pushed to both
    agents' channels when they are remote, so that they read their working documents again."""

    def __init__(self, db: Database, channel: AgentChannel | None = None) -> None:
        self.db = db
        self.channel = channel

    # -- V1 ---------------------------------------------------------------------------------
    def move(self, project_id: str, agent_id: str, source_agent_id: str) -> None:
        """Give ``agent_id`` the vault of ``source_agent_id``; the source gets a new, empty
        vault and the receiver's empty vault is dropped (OQ-24)."""
        with self.db.transaction() as session:
            target = live_agent(session, project_id, agent_id)
            if source_agent_id == target.id:
                raise InvalidInput("Validation failed.", [SOURCE_IS_TARGET])
            source = _source_agent(session, project_id, source_agent_id)
            # Both rows locked, always in id order, so two opposite moves cannot deadlock.
            first, second = sorted((target.id, source.id))
            live_agent(session, project_id, first, lock=True)
            live_agent(session, project_id, second, lock=True)
            session.refresh(target)
            session.refresh(source)
            if source.vault_encrypted:
                raise Forbidden(ENCRYPTED_VAULT)
            if vault_has_data(session, target.vault_id):
                raise Forbidden(TARGET_HAS_DATA)
            if agent_is_busy(session, project_id, target.id) or agent_is_busy(
                session, project_id, source.id
            ):
                raise Conflict(AGENT_BUSY)
            moved = {column: getattr(source, column) for column in _VAULT_COLUMNS}
            fresh = {
                "vault_id": str(uuid.uuid4()),
                "vault_state": "created",
                "vault_flavor": "swift",
                "vault_encrypted": False,
                "vault_region": source.host_region,
                "vault_use_internal": USE_INTERNAL_DEFAULT.get(source.host_flavor, False),
            }
            # The source lets go of the vault id before the receiver takes it (unique column).
            session.execute(sa.update(AGENTS).where(AGENTS.c.id == source.id).values(**fresh))
            session.execute(sa.update(AGENTS).where(AGENTS.c.id == target.id).values(**moved))
            for changed in (source.id, target.id):
                record_event(
                    session,
                    "configuration_changed",
                    project_id=project_id,
                    agent_id=changed,
                    members={"agent": {"id": changed}, "request_id": str(uuid.uuid4())},
                )
        for changed in (source_agent_id, agent_id):
            tell_document_changed(self.db, self.channel, changed, change="vault_migrated")

    # -- V2 / V5: what can be refused before any agent is asked -----------------------------
    def check_encryption_request(
        self, project_id: str, agent_id: str, request: EncryptionRequest
    ) -> None:
        problems = [
            problem
            for name, value in (
                ("old_encrypted_password_hex", request.old_password_hex),
                ("new_encrypted_password_hex", request.new_password_hex),
            )
            if value is not None and (problem := hex_problem(name, value))
        ]
        if problems:
            raise InvalidInput("Validation failed.", problems)
        with self.db.transaction() as session:
            agent = live_agent(session, project_id, agent_id)
        if request.old_password_hex is not None and not agent.vault_encrypted:
            raise Forbidden(OLD_PASSWORD_UNENCRYPTED)
        if request.old_password_hex is None and agent.vault_encrypted:
            raise Forbidden(NO_OLD_PASSWORD_ENCRYPTED)

    def check_verification_request(
        self, project_id: str, agent_id: str, request: VerificationRequest
    ) -> None:
        problem = hex_problem("encrypted_password_hex", request.password_hex)
        if problem:
            raise InvalidInput("Validation failed.", [problem])
        with self.db.transaction() as session:
            agent = live_agent(session, project_id, agent_id)
            vault_owner = agent
            if request.agent_id is not None and request.agent_id != agent.id:
                vault_owner = live_agent(session, project_id, request.agent_id)
        if not vault_owner.vault_encrypted:
            raise Forbidden(NOT_ENCRYPTED)

    def require_agent(self, project_id: str, agent_id: str) -> None:
        with self.db.transaction() as session:
            live_agent(session, project_id, agent_id)


def _source_agent(session: Session, project_id: str, source_agent_id: str) -> Agent:
    """Unknown, deleted and other projects' agents get one answer: 403 (spec V1)."""
    if not storable(source_agent_id):
        raise Forbidden(SOURCE_NOT_IN_PROJECT)
    try:
        return live_agent(session, project_id, source_agent_id)
    except NotFound:
        raise Forbidden(SOURCE_NOT_IN_PROJECT) from None
