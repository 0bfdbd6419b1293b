"""Vault request bodies (spec §9): V1 move, V2 encryption, V5 verification."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from cloudbackup.api.body import decode_object
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
