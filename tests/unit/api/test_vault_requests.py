"""V2-V7 for a remote agent (spec §9): the request is recorded as its event and handed to the
agent's channel (202 + Location), only the agent's own token reports V3/V6, and V4/V7 answer
404 until then, then the spec's bodies."""

from __future__ import annotations

from typing import Any

from cloudbackup.store.db import Database
from cloudbackup.store.tables import Agent
from factories import rows
from factories.api import PROJECT, agent_token, headers, token

BASE = f"/v2/{PROJECT}"
ENCRYPTION = "vault-encryption-requests"
VERIFICATION = "vault-password-verification-requests"


def _channel_items(client: Any, agent_id: str, secret: str) -> list[dict[str, Any]]:
    answer = client.get(
        f"{BASE}/agents/{agent_id}/channel", params={"wait": "0"}, headers=headers(secret)
    )
    assert answer.status_code == 200, answer.text
    return [entry["item"] for entry in answer.json()["items"]]


def _agent_events(client: Any, agent_id: str, secret: str) -> list[dict[str, Any]]:
    answer = client.get(f"{BASE}/agents/{agent_id}/events", headers=headers(secret))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return list(body["events"] if isinstance(body, dict) else body)


def _request_id(response: Any, agent_id: str, kind: str) -> str:
    assert response.status_code == 202, response.text
    assert response.content == b""
    location = response.headers["Location"]
    prefix = f"/v2/{PROJECT}/agents/{agent_id}/{kind}/"
    assert prefix in location, location
    return location.rsplit("/", 1)[1]


def test_enabling_goes_to_the_agent_and_its_own_report_encrypts_the_vault(
    client: Any, db: Database
) -> None:
    secret = token(db)
    agent, other = rows.agent(db, remote=True), rows.agent(db, remote=True)
    mine = agent_token(db, agent.id)
    url = f"{BASE}/agents/{agent.id}/{ENCRYPTION}"
    asked = client.post(
        url,
        json={"old_encrypted_password_hex": None, "new_encrypted_password_hex": "AB 12\ncd"},
        headers=headers(secret),
    )
    request_id = _request_id(asked, agent.id, ENCRYPTION)
    items = _channel_items(client, agent.id, mine)
    assert items == [
        {
            "type": "vault",
            "event": "vault_encryption_enable",
            "agent": {"id": agent.id},
            "request_id": request_id,
            "encrypted_password_hex": "ab12cd",
        }
    ]
    enable = [e for e in _agent_events(client, agent.id, secret) if e["event"].startswith("vault")]
    assert [(e["event"], e["request_id"], e["encrypted_password_hex"]) for e in enable] == [
        ("vault_encryption_enable", request_id, "ab12cd")
    ]
    result = f"{url}/{request_id}"
    assert client.get(result, headers=headers(secret)).status_code == 404  # not reported yet
    report = {"action": "enabled", "succeeded": True}
    for stranger in (secret, agent_token(db, other.id)):
        assert client.post(result, json=report, headers=headers(stranger)).status_code == 403
    assert client.post(result, json=report, headers=headers(mine)).status_code == 204
    assert client.post(result, json=report, headers=headers(mine)).status_code == 409
    body = client.get(result, headers=headers(secret)).json()
    assert set(body) == {"id", "time", "event", "agent", "request_id", "succeeded"}
    assert body["event"] == "vault_encryption_enabled" and body["id"].isdigit()
    assert body["agent"] == {"id": agent.id} and body["request_id"] == request_id
    assert body["succeeded"] is True and body["time"].endswith("Z")
    shown = client.get(f"{BASE}/agents/{agent.id}", headers=headers(secret)).json()
    assert shown["vault"]["encrypted"] is True
    # Now encrypted: enabling again is the documented 403.
    again = client.post(
        url,
        json={"old_encrypted_password_hex": None, "new_encrypted_password_hex": "ab"},
        headers=headers(secret),
    )
    assert again.status_code == 403


def test_a_change_carries_both_passwords_and_a_failed_one_changes_nothing(
    client: Any, db: Database
) -> None:
    secret = token(db)
    agent = rows.agent(db, remote=True, vault_encrypted=True)
    mine = agent_token(db, agent.id)
    url = f"{BASE}/agents/{agent.id}/{ENCRYPTION}"
    asked = client.post(
        url,
        json={"old_encrypted_password_hex": "01", "new_encrypted_password_hex": "02"},
        headers=headers(secret),
    )
    request_id = _request_id(asked, agent.id, ENCRYPTION)
    [item] = _channel_items(client, agent.id, mine)
    assert item["event"] == "vault_encryption_change"
    assert (item["old_encrypted_password_hex"], item["new_encrypted_password_hex"]) == ("01", "02")
    result = f"{url}/{request_id}"
    wrong = client.post(
        result, json={"action": "enabled", "succeeded": True}, headers=headers(mine)
    )
    assert wrong.status_code == 400
    bad = client.post(result, json={"action": "changed"}, headers=headers(mine))
    assert bad.status_code == 400
    failed = {"action": "changed", "succeeded": False}
    assert client.post(result, json=failed, headers=headers(mine)).status_code == 204
    body = client.get(result, headers=headers(secret)).json()
    assert (body["event"], body["succeeded"]) == ("vault_encryption_changed", False)
    with db.read() as session:
        row = session.get(Agent, agent.id)
        assert row is not None and row.vault_encrypted is True


def test_verification_goes_to_the_agent_and_v7_shows_what_it_reported(
    client: Any, db: Database
) -> None:
    secret = token(db)
    agent = rows.agent(db, remote=True, vault_encrypted=True)
    other = rows.agent(db, remote=True, vault_encrypted=True)
    mine = agent_token(db, agent.id)
    url = f"{BASE}/agents/{agent.id}/{VERIFICATION}"
    answers: list[bool] = []
    verified: bool | str
    for verified in (True, "false"):  # the reference types `verified` as String
        asked = client.post(
            url, json={"encrypted_password_hex": "beef", "agent_id": None}, headers=headers(secret)
        )
        request_id = _request_id(asked, agent.id, VERIFICATION)
        result = f"{url}/{request_id}"
        assert client.get(result, headers=headers(secret)).status_code == 404
        report = {"verified": verified}
        bad = client.post(result, json={"verified": "maybe"}, headers=headers(mine))
        assert bad.status_code == 400
        assert client.post(result, json=report, headers=headers(secret)).status_code == 403
        assert client.post(result, json=report, headers=headers(mine)).status_code == 204
        body = client.get(result, headers=headers(secret)).json()
        assert set(body) == {"id", "time", "event", "agent", "request_id", "valid"}
        assert (body["event"], body["request_id"]) == ("vault_password_verified", request_id)
        answers.append(body["valid"])
    assert answers == [True, False]
    items = _channel_items(client, agent.id, mine)
    assert [(i["event"], i["encrypted_password_hex"]) for i in items] == [
        ("vault_password_verify", "beef")
    ] * 2
    # A remote agent reads only its own vault: another agent's is refused.
    foreign = client.post(
        url, json={"encrypted_password_hex": "beef", "agent_id": other.id}, headers=headers(secret)
    )
    assert foreign.status_code == 403
    # An encryption report cannot answer a verification request.
    cross = f"{BASE}/agents/{agent.id}/{ENCRYPTION}/{items[0]['request_id']}"
    crossed = client.post(
        cross, json={"action": "enabled", "succeeded": True}, headers=headers(mine)
    )
    assert crossed.status_code == 404
