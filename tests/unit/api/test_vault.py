"""V1 moves a vault between agents (OQ-24); V2-V7 of a hosted agent give their documented
refusals, then 501 (remote agents: test_vault_requests.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cloudbackup.store.tables import AGENTS
from factories import rows
from factories.api import OTHER_PROJECT, PROJECT, agent_token, headers, token

BASE = f"/v2/{PROJECT}"
PATCH = {"Content-Type": "application/json-patch+json"}
REGION = "The vault property (region) cannot be updated, reason: vault is not empty."


def move(client, secret, agent_id, body):
    return client.post(f"{BASE}/agents/{agent_id}/vault", json=body, headers=headers(secret))


def agent_of(client, secret, agent_id):
    response = client.get(f"{BASE}/agents/{agent_id}", headers=headers(secret))
    assert response.status_code == 200
    return response.json()


def set_region(client, secret, agent_id, region):
    return client.patch(
        f"{BASE}/agents/{agent_id}",
        json=[{"op": "replace", "path": "/vault/region", "value": region}],
        headers=headers(secret, **PATCH),
    )


@pytest.fixture
def full_and_empty(db):
    """``full`` has a vault holding a restorable backup; ``empty`` has a fresh vault."""
    full, empty = rows.agent(db), rows.agent(db, host_flavor="rackspace_dedicated")
    config = rows.configuration(db, full)
    backup = rows.backup(db, config.id, snapshot_id=7, restorable=True)
    return full, empty, config, backup


def test_the_vault_moves_with_its_backups_and_the_source_gets_a_new_empty_one(
    client, db, full_and_empty
):
    secret = token(db)
    full, empty, config, backup = full_and_empty
    moved_vault = agent_of(client, secret, full.id)["vault"]
    dropped_vault = agent_of(client, secret, empty.id)["vault"]

    response = move(client, secret, empty.id, {"source_agent_id": full.id})

    assert response.status_code == 204, response.text
    assert response.content == b""
    receiver = agent_of(client, secret, empty.id)["vault"]
    for key in ("id", "name", "state", "flavor", "encrypted", "region", "use_internal"):
        assert receiver[key] == moved_vault[key], key
    source = agent_of(client, secret, full.id)["vault"]
    assert source["id"] not in (moved_vault["id"], dropped_vault["id"])
    assert (source["state"], source["flavor"], source["encrypted"]) == ("created", "swift", False)
    assert source["region"] == full.host_region and source["use_internal"] is True
    for agent in (full, empty):
        events = client.get(f"{BASE}/agents/{agent.id}/events", headers=headers(secret)).json()
        assert [e["event"] for e in events["events"]] == ["configuration_changed"]
    # The data followed the vault: region changes are refused there and allowed at the source.
    assert set_region(client, secret, empty.id, "IAD").status_code == 403
    assert set_region(client, secret, empty.id, "IAD").json() == {"message": REGION}
    assert set_region(client, secret, full.id, "IAD").status_code == 204
    detail = client.get(f"{BASE}/backups/{backup.id}", headers=headers(secret)).json()
    assert detail["restorable"] is True
    # Configurations stay with their agent.
    document = client.get(f"{BASE}/agents/{full.id}/configuration", headers=headers(secret))
    assert [c["id"] for c in document.json()["configurations"]] == [config.id]
    assert document.json()["vaults"][0]["id"] == source["id"]


def test_documented_refusals_are_403_and_move_nothing(client, db, full_and_empty):
    secret = token(db)
    full, empty, _, _ = full_and_empty
    foreign = rows.agent(db, OTHER_PROJECT)
    locked = rows.agent(db, vault_encrypted=True)
    before = {row.id: row.vault_id for row in (full, empty, foreign, locked)}

    cases = [
        (empty.id, foreign.id, "The source agent is not an agent of this project."),
        (empty.id, "no-such-agent", "The source agent is not an agent of this project."),
        (empty.id, locked.id, "The vault to move is encrypted; encrypted vaults cannot be moved."),
        (full.id, empty.id, "This agent's vault already holds backups"),
    ]
    for target, source, message in cases:
        response = move(client, secret, target, {"source_agent_id": source})
        assert response.status_code == 403, (target, source, response.text)
        assert response.json()["message"].startswith(message)
    with db.transaction() as session:
        now = dict(session.execute(sa.select(AGENTS.c.id, AGENTS.c.vault_id)).all())
    assert all(now[agent_id] == vault_id for agent_id, vault_id in before.items())


def test_a_move_waits_for_running_work_of_either_agent(client, db, full_and_empty):
    secret = token(db)
    full, empty, config, _ = full_and_empty
    rows.backup(db, config.id, state="in_progress")
    response = move(client, secret, empty.id, {"source_agent_id": full.id})
    assert response.status_code == 409
    assert "has not finished" in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, "source_agent_id is required."),
        ({"source_agent_id": 5}, "Expected `str`"),
        ({"source_agent_id": "x", "force": True}, "unknown field"),
    ],
)
def test_bad_move_bodies_are_400(client, db, full_and_empty, body, expected):
    _, empty, _, _ = full_and_empty
    response = move(client, token(db), empty.id, body)
    assert response.status_code == 400
    assert any(expected in e for e in response.json()["errors"]), response.json()


def test_moving_to_itself_or_to_an_unknown_agent(client, db, full_and_empty):
    secret = token(db)
    full, _, _, _ = full_and_empty
    itself = move(client, secret, full.id, {"source_agent_id": full.id})
    assert itself.status_code == 400
    unknown = move(client, secret, "nope", {"source_agent_id": full.id})
    assert unknown.status_code == 404
    assert unknown.json() == {"message": "Agent not found."}
    assert (
        move(client, token(db, role="observer"), full.id, {"source_agent_id": "x"}).status_code
        == 403
    )


# -- V2-V7 --------------------------------------------------------------------------------------


def test_encryption_requests_of_a_hosted_agent_refuse_as_documented_then_answer_501(client, db):
    secret = token(db)
    plain, locked = rows.agent(db), rows.agent(db, vault_encrypted=True)
    url = f"{BASE}/agents/{{}}/vault-encryption-requests"

    old_on_plain = client.post(
        url.format(plain.id),
        json={"old_encrypted_password_hex": "ab12", "new_encrypted_password_hex": "cd34"},
        headers=headers(secret),
    )
    assert old_on_plain.status_code == 403
    assert old_on_plain.json() == {
        "message": "An old password was supplied, but the vault is unencrypted."
    }
    none_on_locked = client.post(
        url.format(locked.id),
        json={"old_encrypted_password_hex": None, "new_encrypted_password_hex": "cd34"},
        headers=headers(secret),
    )
    assert none_on_locked.status_code == 403

    enable = client.post(
        url.format(plain.id),
        json={"old_encrypted_password_hex": None, "new_encrypted_password_hex": "cd 34\nef"},
        headers=headers(secret),
    )
    assert enable.status_code == 501
    body = enable.json()
    assert body["message"] == "V2 is not implemented by this service."
    assert "private key" in body["errors"][0]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"new_encrypted_password_hex": "ab"}, "old_encrypted_password_hex is required"),
        ({"old_encrypted_password_hex": None}, "new_encrypted_password_hex is required."),
        (
            {"old_encrypted_password_hex": None, "new_encrypted_password_hex": "xyz"},
            "must be hexadecimal",
        ),
        (
            {"old_encrypted_password_hex": None, "new_encrypted_password_hex": "ab", "k": 1},
            "unknown field",
        ),
    ],
)
def test_bad_encryption_requests_are_400(client, db, body, expected):
    agent = rows.agent(db)
    response = client.post(
        f"{BASE}/agents/{agent.id}/vault-encryption-requests", json=body, headers=headers(token(db))
    )
    assert response.status_code == 400
    assert any(expected in e for e in response.json()["errors"]), response.json()


def test_password_verification_of_an_unencrypted_vault_is_403(client, db):
    secret = token(db)
    plain, locked = rows.agent(db), rows.agent(db, vault_encrypted=True)
    url = f"{BASE}/agents/{plain.id}/vault-password-verification-requests"

    own = client.post(
        url, json={"encrypted_password_hex": "ab", "agent_id": None}, headers=headers(secret)
    )
    assert own.status_code == 403
    assert own.json() == {"message": "Encryption is not enabled for this agent's vault."}
    other = client.post(
        url, json={"encrypted_password_hex": "ab", "agent_id": locked.id}, headers=headers(secret)
    )
    assert other.status_code == 501  # the other agent's vault is encrypted: 403 does not apply
    unknown = client.post(
        url, json={"encrypted_password_hex": "ab", "agent_id": "nope"}, headers=headers(secret)
    )
    assert unknown.status_code == 404
    missing = client.post(url, json={"encrypted_password_hex": "ab"}, headers=headers(secret))
    assert missing.status_code == 400


def test_results_are_404_and_reports_403_without_a_request_of_the_agents_own(client, db):
    secret = token(db)
    agent = rows.agent(db)
    for kind, report_body in (
        ("vault-encryption-requests", {"action": "enabled", "succeeded": True}),
        ("vault-password-verification-requests", {"verified": True}),
    ):
        url = f"{BASE}/agents/{agent.id}/{kind}/9072bb51-d5fd-4fc5-ad80-d62e573236b6"
        report = client.post(url, json=report_body, headers=headers(secret))
        assert report.status_code == 403  # a user's token speaks for no agent
        mine = client.post(url, json=report_body, headers=headers(agent_token(db, agent.id)))
        assert mine.status_code == 404  # no such request
        assert client.get(url, headers=headers(secret)).status_code == 404
        gone = client.get(f"{BASE}/agents/nope/{kind}/x", headers=headers(secret))
        assert gone.status_code == 404
    observer = token(db, role="observer")
    report = client.post(
        f"{BASE}/agents/{agent.id}/vault-encryption-requests/x",
        json={"action": "enabled", "succeeded": True},
        headers=headers(observer),
    )
    assert report.status_code == 403  # a report needs the Update permission
