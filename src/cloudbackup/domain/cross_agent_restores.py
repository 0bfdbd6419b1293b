"""Restores onto another agent than the one whose vault holds the backup (R1's
``destination_agent_id``), when agents are remote (docs/decisions.md, "Restores onto another
remote agent").

A remote agent's vault opens only with a password on its host. For a restore onto another
remote agent, the user gives it in R1's ``encrypted_password_hex``, sealed with the
destination agent's RSA key: the server keeps the ciphertext on the restore row until it ends
(``RESTORE_RUNS.final_values``) and hands it to the destination in the work item. While the
restore is open, and only then, the destination's token may read (never write or delete) the
source vault's objects through the API: :func:`open_restore_source`.

Hosted agents' vaults are opened by the workers with a key file kept on the service, which no
host is given; a hosted agent holds no private key to read an ``encrypted_password_hex`` with.
So a restore between a hosted and a remote agent is refused (409) saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from cloudbackup.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from cloudbackup.domain.run_states import RESTORE_MACHINE
from cloudbackup.store.db import Database
from cloudbackup.store.tables import Agent, Restore

NOT_OPEN = (
    "Another agent's vault objects may only be read, and only by the destination agent of an "
    "open restore of a backup in that vault."
)
HOSTED_SOURCE = (
    "The backup is in the vault of a hosted agent, whose key stays on the service: restore it "
    "onto a hosted agent (or onto the agent itself)."
)
HOSTED_DESTINATION = (
    "The destination agent is hosted: it holds no private key to read encrypted_password_hex "
    "with, and the backup's vault opens only with a password kept on the remote agent's host. "
    "Restore it onto a remote agent (or onto the agent itself)."
)
NO_USER_PASSWORD = (
    "The backup's vault has no password of yours yet (its key was made on the agent's host and "
    "never leaves it): enable one first (V2, `cloudbackup agents encrypt AGENT`), then give it "
    "in encrypted_password_hex, encrypted with the destination agent's public key."
)
PASSWORD_NEEDED = (
    "encrypted_password_hex is required to restore onto another remote agent: the source "
    "vault's password, encrypted with the destination agent's public key (RSA-OAEP SHA-256)."
)
SOURCE_GONE = "The agent whose vault holds the backup is gone."


@dataclass(frozen=True, slots=True)
class CrossAgentRefusal:
    """Why a restore onto another agent cannot be served; ``invalid_input`` marks a 400 (the
    body lacks something), otherwise a 409 (the agents are not in a state to do it)."""

    message: str
    invalid_input: bool = False

    def raise_for_r1(self) -> None:
        if self.invalid_input:
            raise InvalidInput("Validation failed.", [self.message])
        raise Conflict(self.message)


def vault_owner(session: Session, vault_id: str) -> Agent | None:
    """The agent whose vault ``vault_id`` is now (vaults move, OQ-24)."""
    return session.execute(
        sa.select(Agent).where(col(Agent.vault_id) == vault_id)
    ).scalar_one_or_none()


def refusal(
    owner: Agent | None, destination: Agent, encrypted_password_hex: str | None
) -> CrossAgentRefusal | None:
    """Why a restore from ``owner``'s vault onto ``destination`` (another agent) cannot be
    served, or None. Two hosted agents: the workers open any hosted vault, as before."""
    if owner is None:
        return CrossAgentRefusal(SOURCE_GONE)
    if not owner.remote and not destination.remote:
        return None
    if not owner.remote:
        return CrossAgentRefusal(HOSTED_SOURCE)
    if not destination.remote:
        return CrossAgentRefusal(HOSTED_DESTINATION)
    if not owner.vault_encrypted:
        return CrossAgentRefusal(NO_USER_PASSWORD)
    if not encrypted_password_hex:
        return CrossAgentRefusal(PASSWORD_NEEDED, invalid_input=True)
    return None


def check_start(
    session: Session, vault_id: str, destination: Agent, encrypted_password_hex: str | None
) -> str | None:
    """R1's check of a restore onto an agent whose vault is not ``vault_id``: raises the 400 or
    409 that says why it cannot be served; the ciphertext to keep on the row (None for two
    hosted agents, whose workers need no password)."""
    owner = vault_owner(session, vault_id)
    refused = refusal(owner, destination, encrypted_password_hex)
    if refused is not None:
        refused.raise_for_r1()
    return encrypted_password_hex if destination.remote else None


def hand_over(
    session: Session, restore: Restore, destination: Agent
) -> tuple[str | None, dict[str, Any]]:
    """At the claim: why the restore onto ``destination`` (not the vault's owner) is refused
    now (the agents may have changed since R1), or what the work item adds for the destination
    to open the source vault."""
    owner = vault_owner(session, restore.vault_id)
    refused = refusal(owner, destination, restore.encrypted_password_hex)
    if refused is not None:
        return f"Nothing restored: {refused.message}", {}
    assert owner is not None  # refusal() said so
    return None, {
        "source_agent_id": owner.id,
        "encrypted_password_hex": restore.encrypted_password_hex,
    }


def open_restore_source(db: Database, project_id: str, agent_id: str, caller: str) -> Agent:
    """The agent ``agent_id`` of the project (404 otherwise) when a restore onto ``caller``
    that reads its vault is open now; 403 otherwise. Asked on every request: the grant ends
    with the restore. A deleted agent's vault is still read (a dead host's backups restored
    onto a new one): the open restore is what grants it."""
    with db.read() as session:
        owner = session.execute(
            sa.select(Agent).where(col(Agent.id) == agent_id, col(Agent.project_id) == project_id)
        ).scalar_one_or_none()
        if owner is None:
            raise NotFound("Agent not found.")
        open_restore = session.execute(
            sa.select(col(Restore.id))
            .where(
                col(Restore.project_id) == project_id,
                col(Restore.destination_agent_id) == caller,
                col(Restore.vault_id) == owner.vault_id,
                col(Restore.state).in_([state.value for state in RESTORE_MACHINE.active]),
            )
            .limit(1)
        ).scalar_one_or_none()
    if open_restore is None:
        raise Forbidden(NOT_OPEN)
    return owner
