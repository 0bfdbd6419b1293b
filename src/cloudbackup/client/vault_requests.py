"""The client's side of V2-V7: ask an agent to set or check its vault's password (the
password encrypted with the agent's public key from A3), then wait for its answer (V4/V7)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from cloudbackup.client.api import ApiClient, ApiError, decode
from cloudbackup.client.vault_password import encrypt_password

ENCRYPTION = "vault-encryption-requests"
VERIFICATION = "vault-password-verification-requests"
WAIT_SECONDS = 120.0
POLL_SECONDS = 0.5


def _send(api: ApiClient, method: str, url: str, body: object = None) -> httpx.Response:
    content = None if body is None else json.dumps(body)
    try:
        return api.http.request(
            method, url, content=content, headers=api.headers("application/json")
        )
    except httpx.TransportError as exc:
        raise api.unreachable(exc) from exc


def ask(api: ApiClient, agent_id: str, kind: str, body: dict[str, Any]) -> str:
    """POST a V2/V5 request; the request id from its ``Location``."""
    response = _send(api, "POST", api.url("agents", agent_id, kind), body)
    decode(response)  # an error status raises ApiError
    location = str(response.headers.get("Location", ""))
    return location.rstrip("/").rsplit("/", 1)[-1]


def wait_result(
    api: ApiClient,
    agent_id: str,
    kind: str,
    request_id: str,
    *,
    timeout: float = WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """V4/V7 once the agent answered (404 until then)."""
    deadline = time.monotonic() + timeout
    url = api.url("agents", agent_id, kind, request_id)
    while True:
        try:
            result: dict[str, Any] = decode(_send(api, "GET", url))
            return result
        except ApiError as exc:
            if exc.status != 404 or time.monotonic() >= deadline:
                raise
        sleep(POLL_SECONDS)


def ask_and_wait(
    api: ApiClient, agent_id: str, kind: str, body: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """V2 or V5 (``kind``), then its result (V4/V7) once the agent answered."""
    request_id = ask(api, agent_id, kind, body)
    return wait_result(api, agent_id, kind, request_id, timeout=timeout)


def encryption_body(agent: dict[str, Any], new: str, old: str | None) -> dict[str, Any]:
    """A V2 body for ``agent`` (A3): enabling when the vault is not encrypted yet."""
    key = agent["rsa_public_key"]
    return {
        "old_encrypted_password_hex": None if old is None else encrypt_password(key, old),
        "new_encrypted_password_hex": encrypt_password(key, new),
    }


def verification_body(agent: dict[str, Any], password: str) -> dict[str, Any]:
    return {
        "encrypted_password_hex": encrypt_password(agent["rsa_public_key"], password),
        "agent_id": None,
    }
