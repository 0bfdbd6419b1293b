"""Vault operations: V1 (move), and V2-V7 (encryption and password verification, spec §9) for
remote agents, whose private key reads the password. A hosted agent's V2/V5 give their
documented refusals, then 501 (why in :data:`ENCRYPTION_MISSING`)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import RawBody
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from cloudbackup.api.auth import NEEDS_UPDATE, reporting_agent
from cloudbackup.api.call import Call, Id
from cloudbackup.api.controllers.not_implemented import not_implemented_response
from cloudbackup.api.schemas.vault import (
    EncryptionResultOut,
    VerificationResultOut,
    parse_encryption,
    parse_encryption_report,
    parse_move,
    parse_verification,
    parse_verification_report,
    vault_result_out,
)
from cloudbackup.domain.vault_requests import HostedAgent, VaultRequestService
from cloudbackup.domain.vaults import VaultService

Vaults = NamedDependency[VaultService]
Requests = NamedDependency[VaultRequestService]
# V3 and V6: what the agent's report of a request answers (it needs Update, not Create).
REPORTED: dict[str, Any] = {
    "status_code": HTTP_204_NO_CONTENT,
    "opt": NEEDS_UPDATE,
    "sync_to_thread": True,
}
ENCRYPTION_MISSING = (
    "Vault passwords reach the agent encrypted with the agent's RSA public key "
    "(*_encrypted_password_hex). This agent is hosted: the workers act as the agent and hold "
    "the vault data, but they do not have the agent's private key, so they cannot read the "
    "password to encrypt, re-key or check the vault. Remote agents (`cloudbackup agent run`) "
    "serve V2-V7. Encrypt a hosted vault with a key file instead "
    "(CLOUDBACKUP_VAULT_KEY_DIR/<vault_id>.key, see docs/engine.md)."
)
ENCRYPTION = "/vault-encryption-requests"
VERIFICATION = "/vault-password-verification-requests"


def _hosted(operation_id: str) -> Response[Any]:
    return not_implemented_response(operation_id, ENCRYPTION_MISSING)


class VaultController(Controller):
    path = "/v2/{project_id:str}/agents/{agent_id:str}"

    @post("/vault", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def move_vault(self, call: Call, agent_id: Id, body: RawBody, vaults: Vaults) -> None:
        """V1: this agent takes over the vault of ``source_agent_id`` (OQ-24)."""
        vaults.move(call.project_id, agent_id, parse_move(call.request, body))

    @post(ENCRYPTION, status_code=HTTP_202_ACCEPTED, sync_to_thread=True)
    def request_encryption(
        self, call: Call, agent_id: Id, body: RawBody, vault_requests: Requests
    ) -> Response[Any]:
        """V2: the documented 400/404/403, then the request goes to the remote agent (202);
        501 for a hosted agent."""
        asked = parse_encryption(call.request, body)
        try:
            request_id = vault_requests.ask_encryption(call.project_id, agent_id, asked)
        except HostedAgent:
            return _hosted("V2")
        return call.accepted_empty("agents", agent_id, ENCRYPTION[1:], request_id)

    @post(VERIFICATION, status_code=HTTP_202_ACCEPTED, sync_to_thread=True)
    def request_verification(
        self, call: Call, agent_id: Id, body: RawBody, vault_requests: Requests
    ) -> Response[Any]:
        """V5: the documented 400/404/403 (an unencrypted vault has no password), then the
        request goes to the remote agent (202); 501 for a hosted agent."""
        asked = parse_verification(call.request, body)
        try:
            request_id = vault_requests.ask_verification(call.project_id, agent_id, asked)
        except HostedAgent:
            return _hosted("V5")
        return call.accepted_empty("agents", agent_id, VERIFICATION[1:], request_id)

    @post(f"{ENCRYPTION}/{{request_id:str}}", **REPORTED)
    def report_encryption(
        self, call: Call, agent_id: Id, request_id: Id, body: RawBody, vault_requests: Requests
    ) -> None:
        """V3: the agent's own token reports ``action`` and ``succeeded``."""
        action, succeeded = parse_encryption_report(call.request, body)
        caller = reporting_agent(call.request)
        vault_requests.report_encryption(
            call.project_id, agent_id, caller, request_id, action, succeeded
        )

    @get(f"{ENCRYPTION}/{{request_id:str}}", sync_to_thread=True)
    def encryption_result(
        self, call: Call, agent_id: Id, request_id: Id, vault_requests: Requests
    ) -> EncryptionResultOut:
        """V4: 404 until the agent reported (V3), then the result for about a minute."""
        result = vault_requests.encryption_result(call.project_id, agent_id, request_id)
        return vault_result_out(EncryptionResultOut, result)

    @post(f"{VERIFICATION}/{{request_id:str}}", **REPORTED)
    def report_verification(
        self, call: Call, agent_id: Id, request_id: Id, body: RawBody, vault_requests: Requests
    ) -> None:
        """V6: the agent's own token reports ``verified``."""
        verified = parse_verification_report(call.request, body)
        caller = reporting_agent(call.request)
        vault_requests.report_verification(call.project_id, agent_id, caller, request_id, verified)

    @get(f"{VERIFICATION}/{{request_id:str}}", sync_to_thread=True)
    def verification_result(
        self, call: Call, agent_id: Id, request_id: Id, vault_requests: Requests
    ) -> VerificationResultOut:
        """V7: 404 until the agent reported (V6), then ``valid`` for about a minute."""
        result = vault_requests.verification_result(call.project_id, agent_id, request_id)
        return vault_result_out(VerificationResultOut, result)
