"""`cloudbackup agents encrypt|verify-password`: the password typed (twice) or read from stdin
reaches the agent's channel encrypted with the agent's public key from A3, and only the agent's
private key reads it back (RSA-OAEP SHA-256)."""

from __future__ import annotations

import json
from typing import Any

from cloudbackup.client.host import new_key
from cloudbackup.client.vault_password import decrypt_password
from cloudbackup.store.db import Database
from factories import rows
from factories.api import PROJECT, agent_token, headers


def _remote_agent(db: Database, **overrides: Any) -> tuple[str, bytes]:
    public, private_pem = new_key(2048)
    agent = rows.agent(
        db,
        remote=True,
        rsa_modulus=public["modulus"],
        rsa_exponent=public["exponent"],
        **overrides,
    )
    return agent.id, private_pem


def _channel(client: Any, db: Database, agent_id: str) -> list[dict[str, Any]]:
    answer = client.get(
        f"/v2/{PROJECT}/agents/{agent_id}/channel",
        params={"wait": "0"},
        headers=headers(agent_token(db, agent_id)),
    )
    return [entry["item"] for entry in answer.json()["items"]]


def test_encrypt_sends_the_typed_password_encrypted_for_the_agent(cli, client, db) -> None:
    agent_id, private_pem = _remote_agent(db)
    # Typed twice; nobody answers here, so the wait for V4 ends in its 404.
    result = cli("agents", "encrypt", agent_id, "--wait", "0", input="s3cret\ns3cret\n")
    assert result.exit_code == 4, result.output
    assert "404" in result.output
    [item] = _channel(client, db, agent_id)
    assert item["event"] == "vault_encryption_enable"
    assert decrypt_password(private_pem, item["encrypted_password_hex"]) == "s3cret"


def test_a_change_and_a_verification_read_the_passwords_from_stdin(cli, client, db) -> None:
    agent_id, private_pem = _remote_agent(db, vault_encrypted=True)
    change = cli(
        "agents",
        "encrypt",
        agent_id,
        "--password-stdin",
        "--wait",
        "0",
        input="old-pass-7\nnew-pass-7\n",
    )
    assert change.exit_code == 4, change.output
    verify = cli(
        "agents",
        "verify-password",
        agent_id,
        "--password-stdin",
        "--wait",
        "0",
        input="new-pass-7\n",
    )
    assert verify.exit_code == 4, verify.output
    changed, verified = _channel(client, db, agent_id)
    assert changed["event"] == "vault_encryption_change"
    read = [
        decrypt_password(private_pem, changed[key])
        for key in ("old_encrypted_password_hex", "new_encrypted_password_hex")
    ]
    assert read == ["old-pass-7", "new-pass-7"]
    assert verified["event"] == "vault_password_verify"
    assert decrypt_password(private_pem, verified["encrypted_password_hex"]) == "new-pass-7"
    short = cli("agents", "encrypt", agent_id, "--password-stdin", input="only-one\n")
    assert short.exit_code == 2 and "2 non-empty line(s)" in short.output
    assert "pass-7" not in json.dumps([changed, verified])  # no plaintext on the channel
