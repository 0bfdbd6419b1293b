"""The agent's side of V2-V7: a vault request from its channel. The password arrives encrypted
with this agent's public key; the private key in the state folder reads it. Enabling or
changing the password rewraps the vault key (``Vault.change_password``: no data rewritten) and
keeps the new password in the state folder; a verification opens the vault's config with it.
The result goes back as V3/V6 with the agent's own token."""

from __future__ import annotations

import logging
from typing import Any

from cloudbackup.agent.session import AgentSession
from cloudbackup.agent.state import StateDir
from cloudbackup.client.vault_password import PasswordUnreadable, decrypt_password
from cloudbackup.engine import Storage, Vault, VaultError

log = logging.getLogger("cloudbackup.agent")

ENABLE, CHANGE, VERIFY = (
    "vault_encryption_enable",
    "vault_encryption_change",
    "vault_password_verify",
)


class VaultRequests:
    """One agent's vault requests, against its vault in ``storage``."""

    def __init__(self, state: StateDir, session: AgentSession, storage: Storage) -> None:
        self.state = state
        self.session = session
        self.storage = storage

    def handle(self, item: dict[str, Any]) -> str:
        """Answer one request; what it came to."""
        event, request_id = str(item.get("event")), str(item.get("request_id"))
        if event in (ENABLE, CHANGE):
            succeeded = self.set_password(item)
            action = "enabled" if event == ENABLE else "changed"
            self.session.checked(
                "POST",
                self.session.agent_path("vault-encryption-requests", request_id),
                json={"action": action, "succeeded": succeeded},
            )
            log.info("vault encryption %s: %s", action, "done" if succeeded else "refused")
            return "succeeded" if succeeded else "failed"
        if event == VERIFY:
            verified = self.verify(str(item.get("encrypted_password_hex", "")))
            self.session.checked(
                "POST",
                self.session.agent_path("vault-password-verification-requests", request_id),
                json={"verified": verified},
            )
            return "verified" if verified else "not verified"
        log.warning("ignoring a vault request this agent does not serve: %s", event)
        return "ignored"

    def _read(self, encrypted_hex: object) -> str:
        return decrypt_password(self.state.private_key(), str(encrypted_hex))

    def set_password(self, item: dict[str, Any]) -> bool:
        """Enable (from the password the agent made itself) or change the vault's password."""
        try:
            if item["event"] == ENABLE:
                old = self.state.vault_password()
                new = self._read(item.get("encrypted_password_hex"))
                vault = Vault(self.storage, password=old)  # made now if nothing was backed up
            else:
                old = self._read(item.get("old_encrypted_password_hex"))
                new = self._read(item.get("new_encrypted_password_hex"))
                vault = Vault(self.storage, password=old, create=False)
            if not new:
                return False
            vault.change_password(old, new)
        except (PasswordUnreadable, VaultError) as exc:  # WrongPassword is a VaultError
            log.warning("vault password not changed: %s", exc)
            return False
        self.state.save_vault_password(new)
        return True

    def verify(self, encrypted_hex: str) -> bool:
        """Whether the password opens this agent's vault."""
        try:
            password = self._read(encrypted_hex)
        except PasswordUnreadable:
            return False
        return Vault.check_password(self.storage, password)
