"""A restore onto this agent from another agent's vault (R1's ``destination_agent_id``): the
work item names the source agent and carries R1's ``encrypted_password_hex``, the source
vault's password sealed with this agent's public key. The private key in the state folder
reads it; the source vault is then read (only read) through the API, which allows this agent's
token there only while that restore is open (``domain.cross_agent_restores``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cloudbackup.agent.host_run import HostRun
from cloudbackup.agent.http_storage import HttpStorage
from cloudbackup.agent.reports import RunReports, replace
from cloudbackup.agent.restore import HostRestore
from cloudbackup.agent.session import AgentSession, ApiRefused
from cloudbackup.agent.state import StateDir
from cloudbackup.client.vault_password import PasswordUnreadable, decrypt_password
from cloudbackup.engine import Vault, VaultError

log = logging.getLogger("cloudbackup.agent")

FAILED_REASON = "restore_failed"
UNREADABLE = (
    "Nothing restored: encrypted_password_hex does not decrypt with this agent's private key "
    "(encrypt the source vault's password with the destination agent's public key, A3)."
)
WRONG_PASSWORD = (
    "Nothing restored: the password in encrypted_password_hex does not open the source agent's "
    "vault."
)


class SourceVaultRefused(Exception):
    """The source vault cannot be opened; the message is the restore's diagnostics."""


class SourceVaultStorage(HttpStorage):
    """Another agent's vault objects, read-only (the API refuses writes there too)."""

    def __init__(self, session: AgentSession, source_agent_id: str) -> None:
        super().__init__(session)
        self.base = session.path("agents", source_agent_id, "vault", "objects")

    def put(self, name: str, data: bytes) -> None:
        raise PermissionError(f"{name}: another agent's vault is read-only here")

    def create(self, name: str, data: bytes) -> bool:
        raise PermissionError(f"{name}: another agent's vault is read-only here")

    def delete(self, name: str) -> None:
        raise PermissionError(f"{name}: another agent's vault is read-only here")


def open_source_vault(state: StateDir, session: AgentSession, item: dict[str, Any]) -> Vault:
    """The source vault the item names, opened with the password it carries."""
    source = str(item["source_agent_id"])
    try:
        password = decrypt_password(state.private_key(), str(item.get("encrypted_password_hex")))
    except PasswordUnreadable:
        raise SourceVaultRefused(UNREADABLE) from None
    try:
        return Vault(SourceVaultStorage(session, source), password=password, create=False)
    except VaultError as exc:  # WrongPassword is one
        log.warning("the source vault of agent %s does not open: %s", source, exc)
        raise SourceVaultRefused(WRONG_PASSWORD) from None
    except ApiRefused as exc:
        raise SourceVaultRefused(
            f"Nothing restored: the API refused reading the source agent's vault ({exc})."
        ) from None


class RefusedRestore(HostRun):
    """A restore that ends ``failed`` with a reason before anything is written."""

    noun = "restore"

    def __init__(self, reports: RunReports, item: dict[str, Any], diagnostics: str) -> None:
        super().__init__(reports, item)
        self.diagnostics = diagnostics

    def counters(self) -> list[dict[str, Any]]:
        return [replace("/files_restored", 0), replace("/bytes_restored", 0)]

    def work(self) -> str:
        errors = {"count": 0, "reason": FAILED_REASON, "diagnostics": self.diagnostics, "list": []}
        return self.end("failed", [*self.counters(), replace("/errors", errors)])


def restore_run(
    reports: RunReports,
    state: StateDir,
    session: AgentSession,
    item: dict[str, Any],
    own_vault: Callable[[], Vault],
) -> HostRun:
    """The run of a restore item: from this agent's own vault, or from the source vault the
    item names (another agent's)."""
    if not item.get("source_agent_id") or item["source_agent_id"] == session.identity.agent_id:
        return HostRestore(reports, own_vault(), item)
    try:
        vault = open_source_vault(state, session, item)
    except SourceVaultRefused as refused:
        return RefusedRestore(reports, item, str(refused))
    log.info("restore %s reads agent %s's vault", item.get("id"), item["source_agent_id"])
    return HostRestore(reports, vault, item)
