"""Vault request bodies (spec §9): V1 move, V2 encryption, V5 verification, the agent's
reports V3/V6 and the results V4/V7."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request

from cloudbackup.api.body import decode_object
from cloudbackup.api.schemas.times import iso_z
from cloudbackup.domain.errors import InvalidInput
from cloudbackup.domain.vault_requests import VaultResult
from cloudbackup.domain.vaults import EncryptionRequest, VerificationRequest


class MoveVaultIn(msgspec.Struct, forbid_unknown_fields=True):
    source_agent_id: str


class EncryptionIn(msgspec.Struct, forbid_unknown_fields=True):
    old_encrypted_password_hex: str | None  # the key is required, null when not encrypted yet
    new_encrypted_password_hex: str


class VerificationIn(msgspec.Struct, forbid_unknown_fields=True):
    encrypted_password_hex: str
    agent_id: str | None  # the key is required; null: this agent's own vault


def parse_move(request: Request[Any, Any, Any], body: bytes) -> str:
    data = decode_object(
        request, body, MoveVaultIn, {"source_agent_id": "source_agent_id is required."}
    )
    return data.source_agent_id


def parse_encryption(request: Request[Any, Any, Any], body: bytes) -> EncryptionRequest:
    data = decode_object(
        request,
        body,
        EncryptionIn,
        {
            "old_encrypted_password_hex": "old_encrypted_password_hex is required (null when "
            "the vault is not encrypted yet).",
            "new_encrypted_password_hex": "new_encrypted_password_hex is required.",
        },
    )
    return EncryptionRequest(data.old_encrypted_password_hex, data.new_encrypted_password_hex)


def parse_verification(request: Request[Any, Any, Any], body: bytes) -> VerificationRequest:
    data = decode_object(
        request,
        body,
        VerificationIn,
        {
            "encrypted_password_hex": "encrypted_password_hex is required.",
            "agent_id": "agent_id is required (null for this agent's own vault).",
        },
    )
    return VerificationRequest(data.encrypted_password_hex, data.agent_id)


class EncryptionReportIn(msgspec.Struct, forbid_unknown_fields=True):
    action: str
    succeeded: bool


class VerificationReportIn(msgspec.Struct, forbid_unknown_fields=True):
    verified: bool | str  # the reference types it String: "true" / "false" taken as well


class AgentRefOut(msgspec.Struct):
    id: str


class EncryptionResultOut(msgspec.Struct):
    id: str
    time: str
    event: str
    agent: AgentRefOut
    request_id: str
    succeeded: bool


class VerificationResultOut(msgspec.Struct):
    id: str
    time: str
    event: str
    agent: AgentRefOut
    request_id: str
    valid: bool


def parse_encryption_report(request: Request[Any, Any, Any], body: bytes) -> tuple[str, bool]:
    data = decode_object(
        request,
        body,
        EncryptionReportIn,
        {
            "action": "action is required (enabled or changed).",
            "succeeded": "succeeded is required.",
        },
    )
    if data.action not in ("enabled", "changed"):
        raise InvalidInput("Validation failed.", ["action must be enabled or changed."])
    return data.action, data.succeeded


def parse_verification_report(request: Request[Any, Any, Any], body: bytes) -> bool:
    data = decode_object(request, body, VerificationReportIn, {"verified": "verified is required."})
    if isinstance(data.verified, bool):
        return data.verified
    if data.verified.lower() not in ("true", "false"):
        raise InvalidInput("Validation failed.", ["verified must be true or false."])
    return data.verified.lower() == "true"


# The result of a request: V4 (``succeeded``) and V7 (``valid``) differ only in the last member.
ResultT = TypeVar("ResultT", EncryptionResultOut, VerificationResultOut)


def vault_result_out(out_type: type[ResultT], result: VaultResult) -> ResultT:
    return out_type(
        str(result.event_id),
        iso_z(result.time) or "",
        result.event,
        AgentRefOut(result.agent_id),
        result.request_id,
        result.outcome,
    )
