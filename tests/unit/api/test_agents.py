"""Agents: A1-A5 and A8 (spec §8, §9.1, §14.4, OQ-1, OQ-20, OQ-22, OQ-23)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from cloudbackup.domain.auth import hash_token
from cloudbackup.store.tables import Agent, Configuration, Event
from factories import rows
from factories.api import (
    OTHER_PROJECT,
    PROJECT,
    agent_body,
    create_configuration,
    headers,
    register_agent,
    token,
)

BASE = "http://testserver.local"
API = f"{BASE}/v2/{PROJECT}"
MACHINE = "55f83711-85ff-49d6-9a1a-58c67d452c6a"
REGISTERED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def patch_headers(secret: str) -> dict[str, str]:
    return headers(secret, **{"Content-Type": "application/json-patch+json"})


def spec_body(**overrides: Any) -> dict[str, Any]:
    """The spec's registration example (A1), with the example ids."""
    body = agent_body(**overrides)
    body["host"]["machine"]["id"] = MACHINE
    body["host"]["fingerprint"] = "c4f1a2b3d4e5f6"
    body["host"]["addresses"] = [
        {"version": 4, "addr": "67.23.10.132"},
        {"version": 6, "addr": "::babe:4317:0A83"},
    ]
    return body


def expected_agent(agent_id: str, vault_id: str, **changes: Any) -> dict[str, Any]:
    """An agent as A3 shows it (the A1 answer adds `password` after `id`)."""
    me = f"{API}/agents/{agent_id}"
    agent: dict[str, Any] = {
        "project_id": PROJECT,
        "id": agent_id,
        "name": "Web Server",
        "version": "1.23.008344",
        "host": {
            "flavor": "nova",
            "region": "DFW",
            "machine": {
                "id": MACHINE,
                "links": [{"href": f"{API}/agents?host_machine_id={MACHINE}", "rel": "full"}],
            },
            "os": {"name": "Ubuntu", "version": "14.04", "architecture": "64-bit"},
            "addresses": [
                {"version": 4, "addr": "67.23.10.132"},
                {"version": 6, "addr": "::babe:4317:0A83"},
            ],
        },
        "enabled": True,
        "rsa_public_key": {"modulus": "c4f1a2b3", "exponent": 10001},
        "vault": {
            "id": vault_id,
            "name": f"phoenix_{vault_id}",
            "state": "created",
            "flavor": "swift",
            "encrypted": False,
            "region": "DFW",
            "use_internal": True,
            "links": [
                {"href": f"{me}/vault", "rel": "publicURL"},
                {"href": f"{me}/vault", "rel": "internalURL"},
            ],
        },
        "log_level": "info",
        "registered_time": "<time>",
        "links": [
            {"href": me, "rel": "self"},
            {"href": f"{me}/activities", "rel": "activities"},
            {"href": f"{me}/configuration", "rel": "configuration"},
            {"href": f"{me}/configurations", "rel": "configurations"},
            {"href": f"{me}/events", "rel": "events"},
            {"href": f"{me}/logfiles", "rel": "logfiles"},
            {"href": f"{me}/status", "rel": "status"},
        ],
    }
    agent.update(changes)
    return agent


def without_time(body: dict[str, Any]) -> dict[str, Any]:
    assert REGISTERED.fullmatch(body["registered_time"]), body["registered_time"]
    return {**body, "registered_time": "<time>"}


def agent_rows(db: Any) -> list[Agent]:
    with db.transaction() as session:
        return list(session.execute(sa.select(Agent)).scalars())


def events_of(db: Any, kind: str) -> list[Event]:
    with db.transaction() as session:
        query = sa.select(Event).where(Event.event == kind).order_by(Event.id)
        return list(session.execute(query).scalars())


@pytest.fixture
def secret(db: Any) -> str:
    return token(db)


def post_agent(client: Any, secret: str, body: Any, project: str = PROJECT) -> Any:
    return client.post(f"/v2/{project}/agents", json=body, headers=headers(secret))


# -- A1 ---------------------------------------------------------------------------------------


def test_register_returns_the_agent_with_password_and_a_new_vault(client, db, secret) -> None:
    response = post_agent(client, secret, spec_body())
    assert response.status_code == 201, response.text
    body = response.json()
    agent_id, vault_id, password = body["id"], body["vault"]["id"], body["password"]
    assert UUID.fullmatch(agent_id) and UUID.fullmatch(vault_id) and UUID.fullmatch(password)
    assert response.headers["location"] == f"{API}/agents/{agent_id}"
    expected = expected_agent(agent_id, vault_id)
    expected = {"project_id": PROJECT, "id": agent_id, "password": password, **expected}
    assert without_time(body) == expected
    assert list(body) == list(expected)  # field order of the spec table
    assert "fingerprint" not in response.text


def test_password_is_stored_only_as_its_hash_and_the_fingerprint_is_kept(
    client, db, secret
) -> None:
    body = post_agent(client, secret, spec_body()).json()
    [row] = agent_rows(db)
    assert row.password_hash == hash_token(body["password"])
    assert body["password"] not in repr(row.model_dump())
    assert row.fingerprint == "c4f1a2b3d4e5f6"
    assert row.project_id == PROJECT and row.deleted is False


def test_register_emits_agent_registered(client, db, secret) -> None:
    body = post_agent(client, secret, spec_body()).json()
    [event] = events_of(db, "agent_registered")
    assert event.project_id == PROJECT and event.agent_id == body["id"]
    members = dict(event.members or {})
    assert UUID.fullmatch(members.pop("request_id"))
    assert members == {
        "agent": {
            "id": body["id"],
            "name": "Web Server",
            "host": {"os": {"name": "Ubuntu", "version": "14.04", "architecture": "64-bit"}},
        }
    }


@pytest.mark.parametrize(
    ("flavor", "sent", "expected"),
    [
        ("nova", None, True),
        ("rackspace_dedicated", None, False),
        ("rackspace_private_cloud", None, True),
        ("nova", False, False),  # OQ-22: what is sent is honoured
        ("rackspace_dedicated", True, True),
    ],
)
def test_use_internal_default_depends_on_flavor(client, secret, flavor, sent, expected) -> None:
    body = agent_body()
    body["host"]["flavor"] = flavor
    if sent is not None:
        body["vault"] = {"use_internal": sent}
    response = post_agent(client, secret, body)
    assert response.status_code == 201, response.text
    assert response.json()["vault"]["use_internal"] is expected
    assert response.json()["host"]["flavor"] == flavor


def test_empty_vault_object_means_the_flavor_default(client, secret) -> None:
    response = post_agent(client, secret, agent_body(vault={}))
    assert response.status_code == 201
    assert response.json()["vault"]["use_internal"] is True


def test_nova_may_register_without_region(client, secret) -> None:
    body = agent_body()
    body["host"]["region"] = None
    response = post_agent(client, secret, body)
    assert response.status_code == 201, response.text
    assert response.json()["host"]["region"] is None
    assert response.json()["vault"]["region"] is None


@pytest.mark.parametrize("flavor", ["rackspace_dedicated", "rackspace_private_cloud"])
def test_other_flavors_need_a_region(client, db, secret, flavor) -> None:
    body = agent_body()
    body["host"].update(flavor=flavor, region=None)
    response = post_agent(client, secret, body)
    assert response.status_code == 400
    assert response.json() == {
        "message": "Validation failed.",
        "errors": [f"host.region is required for flavor {flavor}; only nova may omit it."],
    }
    assert agent_rows(db) == []


@pytest.mark.parametrize("exponent", [10001, "10001"])
def test_exponent_is_an_integer_or_its_digits(client, secret, exponent) -> None:
    body = agent_body(rsa_public_key={"modulus": "ABCDEF0123", "exponent": exponent})
    response = post_agent(client, secret, body)
    assert response.status_code == 201, response.text
    assert response.json()["rsa_public_key"] == {"modulus": "ABCDEF0123", "exponent": 10001}


def test_spec_validation_example_lists_every_missing_field(client, db, secret) -> None:
    body = agent_body()
    del body["name"], body["rsa_public_key"]
    response = post_agent(client, secret, body)
    assert response.status_code == 400
    assert response.json() == {
        "message": "Validation failed.",
        "errors": ["Name is required.", "RSA public key is required."],
    }
    assert agent_rows(db) == []


def host_with(**changes: Any) -> dict[str, Any]:
    body = agent_body()
    body["host"].update(changes)
    return body


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "Version is required."),
        (agent_body(name=""), "name must not be empty."),
        (agent_body(name="a\x00b"), "Strings may not contain NUL characters."),
        (agent_body(name=5), "Expected `str`, got `int` - at `$.name`"),
        (agent_body(version="  "), "version must not be empty."),
        (agent_body(log_level="warn"), "Object contains unknown field `log_level`"),
        (agent_body(enabled=True), "Object contains unknown field `enabled`"),
        (agent_body(vault={"use_internal": "yes"}), "Expected `bool`, got `str`"),
        (agent_body(vault={"region": "DFW"}), "unknown field `region` - at `$.vault`"),
        (host_with(flavor="xen"), "host.flavor must be one of nova, rackspace_dedicated"),
        (host_with(region=""), "host.region '' is not a region identifier"),
        (host_with(fingerprint=""), "host.fingerprint must not be empty."),
        (host_with(machine={"id": ""}), "host.machine.id must not be empty."),
        (host_with(machine={"id": "m" * 256}), "host.machine.id may be at most 255"),
        (host_with(machine={}), "Object missing required field `id` - at `$.host.machine`"),
        (host_with(os={"name": "Ubuntu", "version": "14.04"}), "missing required field"),
        (host_with(addresses=[{"version": 5, "addr": "1.2.3.4"}]), "version must be 4 or 6"),
        (
            host_with(addresses=[{"version": "4", "addr": "1.2.3.4"}]),
            "Expected `int`, got `str` - at `$.host.addresses[0].version`",
        ),
        (
            host_with(addresses=[{"version": 4, "addr": "::1"}]),
            "host.addresses[0].addr '::1' is not an IPv4 address.",
        ),
        (
            host_with(addresses=[{"version": 6, "addr": "999.1.1.1"}]),
            "is not an IPv6 address.",
        ),
        (host_with(addresses=None), "Expected `array`, got `null`"),
        (host_with(fingerprint_extra="x"), "unknown field `fingerprint_extra`"),
        (agent_body(rsa_public_key={"modulus": "xyz", "exponent": 3}), "modulus must be a hex"),
        (agent_body(rsa_public_key={"modulus": "ab", "exponent": 0}), "exponent must be"),
        (agent_body(rsa_public_key={"modulus": "ab", "exponent": "0x3"}), "exponent must be"),
        (agent_body(rsa_public_key={"modulus": "ab", "exponent": 2**31}), "exponent must be"),
        (agent_body(rsa_public_key={"modulus": "ab", "exponent": True}), "got `bool`"),
        (agent_body(rsa_public_key={"modulus": "ab", "exponent": 1.5}), "got `float`"),
        (agent_body(rsa_public_key={"modulus": "ab"}), "missing required field `exponent`"),
        ([agent_body()], "Expected `object`, got `array`"),
    ],
)
def test_every_bad_registration_is_a_400_and_writes_nothing(
    client, db, secret, body, fragment
) -> None:
    response = post_agent(client, secret, body)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["message"] == "Validation failed."
    assert any(fragment in error for error in payload["errors"]), payload
    assert agent_rows(db) == []
    assert events_of(db, "agent_registered") == []


def test_region_key_is_required_even_for_nova(client, db, secret) -> None:
    body = agent_body()
    del body["host"]["region"]
    response = post_agent(client, secret, body)
    assert response.status_code == 400
    assert "missing required field `region`" in response.json()["errors"][0]


def test_malformed_json_and_wrong_content_type(client, db, secret) -> None:
    bad = client.post(f"/v2/{PROJECT}/agents", content=b"{", headers=headers(secret))
    assert bad.status_code == 400 and bad.json()["message"] == "Malformed JSON."
    wrong = client.post(
        f"/v2/{PROJECT}/agents",
        json=agent_body(),
        headers=headers(secret, **{"Content-Type": "text/plain"}),
    )
    assert wrong.status_code == 400
    assert wrong.json()["message"] == "Content-Type must be application/json."
    assert agent_rows(db) == []


# -- authentication and roles -----------------------------------------------------------------


def test_no_token_or_a_bad_token_is_401(client, db) -> None:
    no_token = client.post(f"/v2/{PROJECT}/agents", json=agent_body())
    assert no_token.status_code == 401
    bad = client.get(f"/v2/{PROJECT}/agents", headers=headers("not-a-token"))
    assert bad.status_code == 401
    assert set(bad.json()) == {"message"}
    assert agent_rows(db) == []


def test_observer_may_read_but_not_register(client, db) -> None:
    observer = token(db, role="observer")
    response = post_agent(client, observer, agent_body())
    assert response.status_code == 403
    assert agent_rows(db) == []
    assert client.get(f"/v2/{PROJECT}/agents", headers=headers(observer)).status_code == 200


def test_creator_may_not_delete_and_observer_may_not_patch(client, db, secret) -> None:
    agent = register_agent(client, secret)
    creator = token(db, role="creator")
    gone = client.delete(f"/v2/{PROJECT}/agents/{agent['id']}", headers=headers(creator))
    assert gone.status_code == 403
    observer = token(db, role="observer")
    change = client.patch(
        f"/v2/{PROJECT}/agents/{agent['id']}",
        json=[{"op": "replace", "path": "/enabled", "value": False}],
        headers=patch_headers(observer),
    )
    assert change.status_code == 403
    assert client.get(f"/v2/{PROJECT}/agents/{agent['id']}", headers=headers(secret)).json()[
        "enabled"
    ]


def test_another_projects_path_is_404(client, db, secret) -> None:
    response = client.get(f"/v2/{OTHER_PROJECT}/agents", headers=headers(secret))
    assert response.status_code == 404


# -- A2 / A3 ----------------------------------------------------------------------------------


def test_list_is_empty_without_links(client, secret) -> None:
    response = client.get(f"/v2/{PROJECT}/agents", headers=headers(secret))
    assert response.status_code == 200
    assert response.json() == {"agents": []}


def test_list_and_detail_never_show_the_password(client, db, secret) -> None:
    created = post_agent(client, secret, spec_body()).json()
    expected = expected_agent(created["id"], created["vault"]["id"])
    detail = client.get(f"/v2/{PROJECT}/agents/{created['id']}", headers=headers(secret))
    assert detail.status_code == 200
    assert without_time(detail.json()) == expected
    assert detail.json()["registered_time"] == created["registered_time"]
    listed = client.get(f"/v2/{PROJECT}/agents", headers=headers(secret)).json()
    assert list(listed) == ["agents"]
    assert [without_time(a) for a in listed["agents"]] == [expected]
    assert created["password"] not in detail.text + str(listed)


def test_list_filters_by_host_machine_and_omits_other_projects_and_deleted(
    client, db, secret
) -> None:
    first = register_agent(client, secret)
    second = register_agent(client, secret)
    same_host = register_agent(client, secret)
    machine = first["host"]["machine"]["id"]
    with db.transaction() as session:
        session.execute(
            sa.update(Agent).where(Agent.id == same_host["id"]).values(host_machine_id=machine)
        )
    rows.agent(db, OTHER_PROJECT, host_machine_id=machine)
    listed = client.get(f"/v2/{PROJECT}/agents", headers=headers(secret)).json()["agents"]
    assert [a["id"] for a in listed] == [first["id"], second["id"], same_host["id"]]
    filtered = client.get(
        f"/v2/{PROJECT}/agents", params={"host_machine_id": machine}, headers=headers(secret)
    ).json()["agents"]
    assert [a["id"] for a in filtered] == [first["id"], same_host["id"]]
    assert (
        client.delete(f"/v2/{PROJECT}/agents/{first['id']}", headers=headers(secret)).status_code
        == 204
    )
    after = client.get(f"/v2/{PROJECT}/agents", headers=headers(secret)).json()["agents"]
    assert [a["id"] for a in after] == [second["id"], same_host["id"]]


def test_unknown_and_foreign_agents_are_indistinguishable(client, db, secret) -> None:
    foreign = rows.agent(db, OTHER_PROJECT)
    for agent_id in (str(uuid.uuid4()), foreign.id, "not-a-uuid"):
        for method in ("get", "delete"):
            response = getattr(client, method)(
                f"/v2/{PROJECT}/agents/{agent_id}", headers=headers(secret)
            )
            assert response.status_code == 404
            assert response.json() == {"message": "Agent not found."}
        response = client.patch(
            f"/v2/{PROJECT}/agents/{agent_id}",
            json=[{"op": "replace", "path": "/enabled", "value": False}],
            headers=patch_headers(secret),
        )
        assert response.status_code == 404
        assert response.json() == {"message": "Agent not found."}
    with db.transaction() as session:
        assert session.get(Agent, foreign.id).enabled is True  # type: ignore[union-attr]


def test_wrong_methods_are_405(client, secret) -> None:
    agent = register_agent(client, secret)
    put = client.put(f"/v2/{PROJECT}/agents/{agent['id']}", json={}, headers=headers(secret))
    assert put.status_code == 405
    assert put.json()["message"]
    assert client.delete(f"/v2/{PROJECT}/agents", headers=headers(secret)).status_code == 405


# -- A4 ---------------------------------------------------------------------------------------


def patch_agent(client: Any, secret: str, agent_id: str, ops: Any) -> Any:
    return client.patch(f"/v2/{PROJECT}/agents/{agent_id}", json=ops, headers=patch_headers(secret))


def read(client: Any, secret: str, agent_id: str) -> dict[str, Any]:
    response = client.get(f"/v2/{PROJECT}/agents/{agent_id}", headers=headers(secret))
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def test_patch_every_writable_path_with_replace_or_add(client, db, secret) -> None:
    agent = register_agent(client, secret)
    response = patch_agent(
        client,
        secret,
        agent["id"],
        [
            {"op": "replace", "path": "/enabled", "value": False},
            {"op": "add", "path": "/vault/region", "value": "ORD"},
            {"op": "replace", "path": "/vault/use_internal", "value": False},
            {"op": "add", "path": "/log_level", "value": "warn"},
        ],
    )
    assert response.status_code == 204
    assert response.content == b""
    after = read(client, secret, agent["id"])
    assert after["enabled"] is False
    assert after["vault"]["region"] == "ORD"
    assert after["vault"]["use_internal"] is False
    assert after["log_level"] == "warn"
    assert after["host"]["region"] == "DFW"  # the host's own region is not the vault's
    [event] = events_of(db, "configuration_changed")
    assert event.agent_id == agent["id"] and event.configuration_id is None
    assert event.members["agent"] == {"id": agent["id"]}  # type: ignore[index]
    assert UUID.fullmatch(event.members["request_id"])  # type: ignore[index]


@pytest.mark.parametrize("level", ["all", "trace", "debug", "info", "warn", "error", "fatal"])
def test_every_log_level(client, secret, level) -> None:
    agent = register_agent(client, secret)
    ops = [{"op": "replace", "path": "/log_level", "value": level}]
    assert patch_agent(client, secret, agent["id"], ops).status_code == 204
    assert read(client, secret, agent["id"])["log_level"] == level


@pytest.mark.parametrize(
    ("ops", "fragment"),
    [
        (
            [{"op": "replace", "path": "/log-level", "value": "warn"}],
            "/log-level cannot be changed",
        ),
        ([{"op": "replace", "path": "/name", "value": "x"}], "/name cannot be changed"),
        ([{"op": "replace", "path": "/vault/encrypted", "value": True}], "cannot be changed"),
        ([{"op": "remove", "path": "/enabled"}], "op 'remove' at '/enabled' is not supported"),
        ([{"op": "replace", "path": "/enabled"}], "op at '/enabled' has no value."),
        ([{"op": "replace", "path": "/enabled", "value": "false"}], "/enabled: Expected `bool`"),
        ([{"op": "replace", "path": "/log_level", "value": "verbose"}], "log_level must be one"),
        ([{"op": "replace", "path": "/vault/region", "value": None}], "/vault/region: Expected"),
        ([{"op": "replace", "path": "/vault/region", "value": "D F W"}], "not a region identifier"),
        ([{"op": "replace", "path": "/vault/use_internal", "value": 1}], "Expected `bool`"),
        ([], "The JSON Patch array is empty."),
        ({"op": "replace", "path": "/enabled", "value": False}, "Expected `array`"),
        ([{"op": "replace", "path": "/enabled", "value": False, "from": "/x"}], "unknown field"),
    ],
)
def test_bad_patches_are_400_and_change_nothing(client, db, secret, ops, fragment) -> None:
    agent = register_agent(client, secret)
    good = [{"op": "replace", "path": "/enabled", "value": False}]
    body = [*good, *ops] if isinstance(ops, list) and ops else ops
    response = patch_agent(client, secret, agent["id"], body)
    assert response.status_code == 400, response.text
    assert response.json()["message"] == "Validation failed."
    assert any(fragment in e for e in response.json()["errors"]), response.json()
    assert without_time(read(client, secret, agent["id"])) == without_time(
        {k: v for k, v in agent.items() if k != "password"}
    )
    assert events_of(db, "configuration_changed") == []


def test_patch_needs_the_json_patch_content_type(client, secret) -> None:
    agent = register_agent(client, secret)
    response = client.patch(
        f"/v2/{PROJECT}/agents/{agent['id']}",
        json=[{"op": "replace", "path": "/enabled", "value": False}],
        headers=headers(secret),
    )
    assert response.status_code == 400
    assert response.json()["message"] == "Content-Type must be application/json-patch+json."


def test_region_of_a_vault_with_data_cannot_change(client, db, secret) -> None:
    agent = register_agent(client, secret)
    config = create_configuration(client, secret, agent["id"])
    rows.backup(db, config["id"], state="failed")  # no snapshot: the vault is still empty
    ok = patch_agent(
        client, secret, agent["id"], [{"op": "replace", "path": "/vault/region", "value": "IAD"}]
    )
    assert ok.status_code == 204
    rows.backup(db, config["id"], snapshot_id=1111)
    refused = patch_agent(
        client,
        secret,
        agent["id"],
        [
            {"op": "replace", "path": "/log_level", "value": "debug"},
            {"op": "replace", "path": "/vault/region", "value": "ORD"},
        ],
    )
    assert refused.status_code == 403
    assert refused.json() == {
        "message": "The vault property (region) cannot be updated, reason: vault is not empty."
    }
    after = read(client, secret, agent["id"])
    assert after["vault"]["region"] == "IAD" and after["log_level"] == "info"
    # Re-sending the current region is not a change; other vault settings stay writable.
    same = patch_agent(
        client,
        secret,
        agent["id"],
        [
            {"op": "replace", "path": "/vault/region", "value": "IAD"},
            {"op": "replace", "path": "/vault/use_internal", "value": False},
        ],
    )
    assert same.status_code == 204
    assert read(client, secret, agent["id"])["vault"]["use_internal"] is False


# -- A5 ---------------------------------------------------------------------------------------


def test_delete_retires_the_agent_and_its_configurations(client, db, secret) -> None:
    agent = register_agent(client, secret)
    config = create_configuration(client, secret, agent["id"])
    finished = rows.backup(db, config["id"], state="completed", snapshot_id=7)
    response = client.delete(f"/v2/{PROJECT}/agents/{agent['id']}", headers=headers(secret))
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"/v2/{PROJECT}/agents/{agent['id']}", headers=headers(secret)).json() == {
        "message": "Agent not found."
    }
    detail = client.get(f"/v2/{PROJECT}/configurations/{config['id']}", headers=headers(secret))
    assert detail.status_code == 200
    assert detail.json()["deleted"] is True
    listed = client.get(f"/v2/{PROJECT}/configurations", headers=headers(secret)).json()
    assert listed == {"configurations": []}
    [row] = agent_rows(db)
    assert row.deleted is True  # soft delete: the backups keep their agent
    backup = client.get(f"/v2/{PROJECT}/backups/{finished.id}", headers=headers(secret))
    assert backup.status_code == 200
    again = client.delete(f"/v2/{PROJECT}/agents/{agent['id']}", headers=headers(secret))
    assert again.status_code == 404
    assert again.json() == {"message": "Agent not found."}


@pytest.mark.parametrize(
    "state",
    ["start_requested", "start_scheduled", "queued", "preparing", "in_progress", "stop_requested"],
)
def test_delete_is_refused_while_a_backup_is_not_final(client, db, secret, state) -> None:
    agent = register_agent(client, secret)
    config = create_configuration(client, secret, agent["id"])
    rows.backup(db, config["id"], state=state)
    response = client.delete(f"/v2/{PROJECT}/agents/{agent['id']}", headers=headers(secret))
    assert response.status_code == 409
    assert response.json() == {
        "message": "The agent has a backup that has not finished; stop it or wait for it to "
        "end before deleting the agent."
    }
    assert read(client, secret, agent["id"])["id"] == agent["id"]
    with db.transaction() as session:
        assert session.get(Configuration, config["id"]).deleted is False  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["restore", "cleanup"])
def test_delete_is_refused_while_a_restore_to_it_or_its_cleanup_runs(
    client, db, secret, kind
) -> None:
    source = rows.agent(db)
    finished = rows.backup(db, rows.configuration(db, source).id, snapshot_id=1)
    agent = register_agent(client, secret)
    target = db_agent(db, agent["id"])
    if kind == "restore":
        running = rows.restore(db, finished.id, target, state="in_progress")
    else:
        running = rows.cleanup(db, target, state="queued")

    response = client.delete(f"/v2/{PROJECT}/agents/{agent['id']}", headers=headers(secret))

    assert response.status_code == 409
    assert response.json() == {
        "message": f"The agent has a {kind} that has not finished; stop it or wait for it to "
        "end before deleting the agent."
    }
    with db.transaction() as session:
        table = type(running)
        session.execute(sa.update(table).where(table.id == running.id).values(state="completed"))
    done = client.delete(f"/v2/{PROJECT}/agents/{agent['id']}", headers=headers(secret))
    assert done.status_code == 204


def db_agent(db, agent_id: str) -> Agent:
    with db.transaction() as session:
        row = session.get(Agent, agent_id)
        assert row is not None
        session.expunge(row)
        return row


# -- A8 ---------------------------------------------------------------------------------------


def test_configurations_of_an_agent(client, db, secret) -> None:
    agent = register_agent(client, secret)
    other = register_agent(client, secret)
    empty = client.get(
        f"/v2/{PROJECT}/agents/{agent['id']}/configurations", headers=headers(secret)
    )
    assert empty.status_code == 200
    assert empty.json() == {"configurations": []}
    first = create_configuration(client, secret, agent["id"], name="First")
    create_configuration(client, secret, other["id"])
    second = create_configuration(client, secret, agent["id"], name="Second")
    gone = create_configuration(client, secret, agent["id"], name="Gone")
    client.delete(f"/v2/{PROJECT}/configurations/{gone['id']}", headers=headers(secret))
    listed = client.get(
        f"/v2/{PROJECT}/agents/{agent['id']}/configurations", headers=headers(secret)
    ).json()
    project_list = client.get(f"/v2/{PROJECT}/configurations", headers=headers(secret)).json()
    own = [c for c in project_list["configurations"] if c["agent"]["id"] == agent["id"]]
    assert listed == {"configurations": own}  # same list form as CF2
    assert [c["id"] for c in listed["configurations"]] == [first["id"], second["id"]]
    assert "inclusions" not in listed["configurations"][0]


def test_configurations_of_unknown_foreign_or_deleted_agent_are_404(client, db, secret) -> None:
    foreign = rows.agent(db, OTHER_PROJECT)
    deleted = register_agent(client, secret)
    client.delete(f"/v2/{PROJECT}/agents/{deleted['id']}", headers=headers(secret))
    for agent_id in (str(uuid.uuid4()), foreign.id, deleted["id"]):
        response = client.get(
            f"/v2/{PROJECT}/agents/{agent_id}/configurations", headers=headers(secret)
        )
        assert response.status_code == 404
        assert response.json() == {"message": "Agent not found."}


def test_ids_no_row_can_hold_are_simply_not_found(client, secret) -> None:
    # PostgreSQL refuses NUL in text: such ids must not reach the database (no 500).
    for url in (f"/v2/{PROJECT}/agents/a%00b", f"/v2/{PROJECT}/agents/a%00b/configurations"):
        response = client.get(url, headers=headers(secret))
        assert response.status_code == 404
        assert response.json() == {"message": "Not found."}
    listed = client.get(f"/v2/{PROJECT}/agents?host_machine_id=%00", headers=headers(secret))
    assert listed.status_code == 400
