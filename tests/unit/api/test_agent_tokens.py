"""A9 `POST /v2/{project_id}/agents/tokens`: an agent trades id + password + fingerprint for a
token (spec §8 A9)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from cloudbackup.domain.auth import authenticate
from cloudbackup.store.tables import Agent, ApiToken
from factories.api import OTHER_PROJECT, PROJECT, headers, register_agent, token

URL = f"/v2/{PROJECT}/agents/tokens"
JSON = {"Content-Type": "application/json"}


def login_body(agent: dict, password: str | None = None, **overrides) -> dict:
    body = {
        "project_id": agent["project_id"],
        "id": agent["id"],
        "password": password if password is not None else agent["password"],
        "name": agent["name"],
        "version": agent["version"],
        "host": {
            "os": dict(agent["host"]["os"]),
            "fingerprint": agent["_fingerprint"],
            "addresses": [dict(a) for a in agent["host"]["addresses"]],
        },
    }
    body.update(overrides)
    return body


@pytest.fixture
def agent(client, db) -> dict:
    fingerprint = "fp-web-01"
    registered = register_agent(
        client,
        token(db),
        host={
            "flavor": "nova",
            "region": "DFW",
            "machine": {"id": "55f83711-85ff-49d6-9a1a-58c67d452c6a"},
            "os": {"name": "Ubuntu", "version": "14.04", "architecture": "64-bit"},
            "fingerprint": fingerprint,
            "addresses": [{"version": 4, "addr": "67.23.10.132"}],
        },
    )
    return {**registered, "_fingerprint": fingerprint}


def test_an_agent_gets_a_token_that_works_without_delete_rights(client, db, agent):
    before = datetime.now(UTC)
    response = client.post(URL, json=login_body(agent), headers=JSON)  # no X-Auth-Token

    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["token"] and list(body["token"]) == ["id", "expires"]
    secret = body["token"]["id"]
    expires = datetime.fromisoformat(body["token"]["expires"].replace("Z", "+00:00"))
    assert body["token"]["expires"].endswith("Z")
    assert timedelta(hours=23, minutes=59) < expires - before <= timedelta(hours=24, seconds=5)

    own = client.get(f"/v2/{PROJECT}/agents/{agent['id']}", headers=headers(secret))
    assert own.status_code == 200
    denied = client.delete(f"/v2/{PROJECT}/agents/{agent['id']}", headers=headers(secret))
    assert denied.status_code == 403  # an agent's token creates, reads, updates; never deletes
    elsewhere = client.get(f"/v2/{OTHER_PROJECT}/agents", headers=headers(secret))
    assert elsewhere.status_code == 404

    with db.transaction() as session:
        row = session.execute(sa.select(ApiToken).where(ApiToken.agent_id == agent["id"])).one()[0]
        assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert row.roles == "cloudbackup:creator"
        # Only the hash is stored; the token stops working when it expires.
        assert authenticate(session, secret) is not None
        assert authenticate(session, secret, now=expires + timedelta(seconds=1)) is None


def test_wrong_password_unknown_foreign_or_deleted_agent_all_look_the_same(client, db, agent):
    wrong = client.post(URL, json=login_body(agent, password="0" * 36), headers=JSON)
    unknown = client.post(
        URL, json=login_body(agent, id="7c8ee069-568f-4d5a-932f-fb2af86b5fd5"), headers=JSON
    )
    theirs = register_agent(client, token(db, OTHER_PROJECT), project_id=OTHER_PROJECT)
    foreign = client.post(
        URL,
        json=login_body(
            {**theirs, "_fingerprint": "x"}, project_id=PROJECT, password=theirs["password"]
        ),
        headers=JSON,
    )
    assert (
        client.delete(f"/v2/{PROJECT}/agents/{agent['id']}", headers=headers(token(db)))
    ).status_code == 204
    deleted = client.post(URL, json=login_body(agent), headers=JSON)

    for response in (wrong, unknown, foreign, deleted):
        assert response.status_code == 401, response.text
        assert response.json() == {"message": "The agent id or password is wrong."}


def test_another_hosts_fingerprint_is_409_and_changes_nothing(client, db, agent):
    body = login_body(agent, name="Impostor")
    body["host"]["fingerprint"] = "someone-else"
    response = client.post(URL, json=body, headers=JSON)
    assert response.status_code == 409
    assert "fingerprint" in response.json()["message"]
    shown = client.get(f"/v2/{PROJECT}/agents/{agent['id']}", headers=headers(token(db)))
    assert shown.json()["name"] == agent["name"]
    with db.transaction() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(ApiToken)).scalar() == 2


def test_the_agent_reports_what_it_runs_now(client, db, agent):
    body = login_body(agent, name="Web Server 2", version="1.24.0")
    body["host"]["os"] = {"name": "Debian", "version": "12", "architecture": "64-bit"}
    body["host"]["addresses"] = [{"version": 6, "addr": "::babe:4317:0A83"}]
    assert client.post(URL, json=body, headers=JSON).status_code == 200
    shown = client.get(f"/v2/{PROJECT}/agents/{agent['id']}", headers=headers(token(db))).json()
    assert (shown["name"], shown["version"]) == ("Web Server 2", "1.24.0")
    assert shown["host"]["os"] == {"name": "Debian", "version": "12", "architecture": "64-bit"}
    assert shown["host"]["addresses"] == [{"version": 6, "addr": "::babe:4317:0A83"}]


@pytest.mark.parametrize(
    ("change", "errors"),
    [
        (
            lambda b: {k: v for k, v in b.items() if k not in ("id", "password")},
            ["Agent ID is required.", "Password is required."],
        ),
        (lambda b: {**b, "project_id": OTHER_PROJECT}, ["project_id must be the path's."]),
        (lambda b: {**b, "name": ""}, ["name must not be empty."]),
        (
            lambda b: {**b, "host": {**b["host"], "addresses": [{"version": 4, "addr": "::1"}]}},
            ["host.addresses[0].addr '::1' is not an IPv4 address."],
        ),
    ],
)
def test_bad_bodies_are_400_and_issue_nothing(client, db, agent, change, errors):
    response = client.post(URL, json=change(login_body(agent)), headers=JSON)
    assert response.status_code == 400, response.text
    assert response.json() == {"message": "Validation failed.", "errors": errors}
    with db.transaction() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(ApiToken)).scalar() == 1


def test_unknown_fields_and_wrong_types_are_400(client, agent):
    extra = client.post(URL, json={**login_body(agent), "role": "admin"}, headers=JSON)
    typed = client.post(URL, json={**login_body(agent), "project_id": 110011}, headers=JSON)
    assert extra.status_code == typed.status_code == 400


def test_the_password_is_only_stored_hashed(db, agent):
    with db.transaction() as session:
        row = session.execute(sa.select(Agent).where(Agent.id == agent["id"])).scalar_one()
    assert row.password_hash == hashlib.sha256(agent["password"].encode()).hexdigest()
    assert agent["password"] not in repr(row.model_dump())


def test_revoked_and_expired_tokens_are_refused_by_the_api(client, db, agent):
    from cloudbackup.domain.auth import create_token, revoke_token

    secret = client.post(URL, json=login_body(agent), headers=JSON).json()["token"]["id"]
    url = f"/v2/{PROJECT}/agents/{agent['id']}"
    assert client.get(url, headers=headers(secret)).status_code == 200
    with db.transaction() as session:
        row = session.execute(sa.select(ApiToken).where(ApiToken.agent_id == agent["id"])).one()[0]
        assert revoke_token(session, row.id)
        expired, _ = create_token(session, PROJECT, ["admin"], ttl=timedelta(seconds=-1))
    for refused in (secret, expired):
        response = client.get(url, headers=headers(refused))
        assert response.status_code == 401
        assert response.json() == {"message": "The X-Auth-Token is invalid, expired or revoked."}
