"""A6 agent status (busy, online) and A7 the agent's working document."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from cloudbackup.store.tables import (
    AGENT_PRESENCE,
    PROJECT_ACTIVATIONS,
    RESTORES,
    AgentQueue,
    utcnow,
)
from factories import rows
from factories.api import (
    OTHER_PROJECT,
    PROJECT,
    agent_token_of,
    create_configuration,
    headers,
    start_backup,
    token,
)

BASE = f"/v2/{PROJECT}"
PATCH = {"Content-Type": "application/json-patch+json"}


def status(client, secret, agent_id):
    response = client.get(f"{BASE}/agents/{agent_id}/status", headers=headers(secret))
    assert response.status_code == 200, response.text
    return response.json()


def agent_event(client, secret, agent_id, event, **body):
    response = client.post(
        f"{BASE}/agents/{agent_id}/events",
        json={"event": event, **body},
        headers=headers(agent_token_of(client, agent_id), **{"X-Agent-Id": agent_id}),
    )
    assert response.status_code == 202, response.text


def age_presence(db, agent_id, **ages):
    """Move the agent's recorded times into the past (``last_seen_at=100`` = 100 s ago)."""
    values = {name: utcnow() - timedelta(seconds=seconds) for name, seconds in ages.items()}
    with db.transaction() as session:
        session.execute(
            sa.update(AGENT_PRESENCE).where(AGENT_PRESENCE.c.agent_id == agent_id).values(**values)
        )


# -- A6 -----------------------------------------------------------------------------------------


def test_a_silent_agent_without_work_is_neither_busy_nor_online(client, db):
    agent = rows.agent(db)
    assert status(client, token(db), agent.id) == {"busy": False, "online": False}


def test_busy_while_a_backup_restore_or_cleanup_is_not_final(client, db):
    secret = token(db)
    agent, destination = rows.agent(db), rows.agent(db)
    config = rows.configuration(db, agent)
    response = start_backup(client, secret, config.id)
    assert status(client, secret, agent.id)["busy"] is True
    assert status(client, secret, destination.id)["busy"] is False

    stop = client.patch(
        response.headers["location"],
        json=[{"op": "replace", "path": "/state", "value": "stop_requested"}],
        headers=headers(secret, **PATCH),
    )
    assert stop.status_code == 204
    assert status(client, secret, agent.id)["busy"] is False

    done = rows.backup(db, config.id, snapshot_id=1, restorable=True)
    restore = rows.restore(db, done.id, destination, state="in_progress")
    assert status(client, secret, destination.id)["busy"] is True  # restores: the destination
    assert status(client, secret, agent.id)["busy"] is False
    with db.transaction() as session:
        session.execute(
            sa.update(RESTORES).where(RESTORES.c.id == restore.id).values(state="completed")
        )
    rows.cleanup(db, agent, state="queued")
    assert status(client, secret, agent.id)["busy"] is True


def test_online_follows_heartbeats_and_shutdown(client, db):
    secret = token(db)
    agent = rows.agent(db)
    agent_event(client, secret, agent.id, "agent_heartbeat")
    assert status(client, secret, agent.id)["online"] is True

    agent_event(client, secret, agent.id, "shutdown")
    assert status(client, secret, agent.id)["online"] is False

    agent_event(client, secret, agent.id, "startup")
    assert status(client, secret, agent.id)["online"] is True


def test_the_heartbeat_timeout_depends_on_the_activation_mode(client, db):
    secret = token(db)
    agent = rows.agent(db)
    agent_event(client, secret, agent.id, "agent_heartbeat")
    age_presence(db, agent.id, last_seen_at=100)
    # idle (nothing activated): one idle heartbeat interval (1 h) plus 75 s of grace
    assert status(client, secret, agent.id)["online"] is True

    client.post(
        f"{BASE}/events",
        json={"event": "agent_activate", "mode": "active"},
        headers=headers(secret),
    )
    # active: the heartbeat timeout is 75 s
    assert status(client, secret, agent.id)["online"] is False

    # an activation lapses back to idle after 10 minutes
    with db.transaction() as session:
        session.execute(
            sa.update(PROJECT_ACTIVATIONS).values(mode_set_at=utcnow() - timedelta(seconds=601))
        )
    assert status(client, secret, agent.id)["online"] is True

    # the agent's own activation wins when it is the newer one
    agent_event(client, secret, agent.id, "agent_activate", mode="real_time")
    assert status(client, secret, agent.id)["online"] is False
    age_presence(db, agent.id, last_seen_at=3_700)
    with db.transaction() as session:
        session.execute(
            sa.update(AGENT_PRESENCE).values(mode_set_at=utcnow() - timedelta(seconds=700))
        )
    assert status(client, secret, agent.id)["online"] is False  # idle, but silent > 1 h 75 s


def test_our_workers_count_as_the_agent_while_they_report(client, db):
    """OQ-41: workers act as the agent; a pinned agent needs its own host's worker."""
    secret = token(db)
    agent, pinned = rows.agent(db), rows.agent(db)
    with db.transaction() as session:
        session.add(AgentQueue(agent_id=pinned.id))
    rows.worker_heartbeat(db, last_seen=utcnow() - timedelta(minutes=5))  # gone quiet
    assert status(client, secret, agent.id)["online"] is False

    rows.worker_heartbeat(db)  # a live shared worker
    assert status(client, secret, agent.id)["online"] is True
    assert status(client, secret, pinned.id)["online"] is False

    rows.worker_heartbeat(db, agent_id=pinned.id)
    assert status(client, secret, pinned.id)["online"] is True


def test_status_of_unknown_foreign_or_deleted_agents_is_404(client, db):
    secret = token(db)
    for agent_id in ("nope", rows.agent(db, OTHER_PROJECT).id, rows.agent(db, deleted=True).id):
        response = client.get(f"{BASE}/agents/{agent_id}/status", headers=headers(secret))
        assert response.status_code == 404
        assert response.json() == {"message": "Agent not found."}


# -- A7 -----------------------------------------------------------------------------------------


def test_working_document_has_preferences_vault_and_configurations_with_next_times(client, db):
    secret = token(db)
    agent = client.post(
        f"{BASE}/agents",
        json={
            "name": "Web Server",
            "version": "1.0",
            "host": {
                "flavor": "nova",
                "region": "DFW",
                "machine": {"id": "m-1"},
                "os": {"name": "Ubuntu", "version": "14.04", "architecture": "64-bit"},
                "fingerprint": "fp",
                "addresses": [],
            },
            "rsa_public_key": {"modulus": "c4f1", "exponent": 10001},
        },
        headers=headers(secret),
    ).json()
    agent_id, vault_id = agent["id"], agent["vault"]["id"]
    scheduled = create_configuration(
        client,
        secret,
        agent_id,
        schedule={"recurrence": ["RRULE:FREQ=HOURLY;INTERVAL=2"], "time_zone": "US/Central"},
    )
    manual = create_configuration(client, secret, agent_id, ["/etc/"], name="Manual")
    gone = create_configuration(client, secret, agent_id, ["/srv/"], name="Gone")
    assert (
        client.delete(f"{BASE}/configurations/{gone['id']}", headers=headers(secret)).status_code
        == 204
    )
    client.patch(
        f"{BASE}/agents/{agent_id}",
        json=[{"op": "replace", "path": "/log_level", "value": "warn"}],
        headers=headers(secret, **PATCH),
    )

    response = client.get(f"{BASE}/agents/{agent_id}/configuration", headers=headers(secret))

    assert response.status_code == 200, response.text
    document = response.json()
    assert list(document) == ["system_preferences", "vaults", "configurations"]
    host = "http://testserver.local"
    assert document["system_preferences"] == {
        "environment": {"minimum_disk_space_mb": {"backup": 100, "restore": 100, "cleanup": 100}},
        "logging": {"level": "warn"},
        "events": {
            "rse": {
                "host": host,
                "channel": f"{BASE}/agents/{agent_id}/channel",
                "polling": {
                    "interval_ms": {"idle": 10000, "active": 1000, "real_time": 300},
                    "timeout_ms": {"idle": 90000, "active": 60000, "real_time": 40000},
                },
                "heartbeat": {
                    "interval_ms": {"idle": 3600000, "active": 1000, "real_time": 1000},
                    "timeout_ms": {"idle": 0, "active": 75000, "real_time": 75000},
                },
            }
        },
        "backup_controls": {"disable_vss": 0},
    }
    vault_href = f"{host}{BASE}/agents/{agent_id}/vault"
    assert document["vaults"] == [
        {
            "id": vault_id,
            "use_internal": True,
            "encrypted": False,
            "links": [
                {"href": vault_href, "rel": "publicURL"},
                {"href": vault_href, "rel": "internalURL"},
                {"href": vault_href, "rel": "data_services"},
            ],
        }
    ]
    entries = document["configurations"]
    assert [e["id"] for e in entries] == [scheduled["id"], manual["id"]]
    first = entries[0]
    assert list(first) == [
        "id", "name", "enabled", "vault_id", "retention", "times", "inclusions", "exclusions",
    ]  # fmt: skip
    assert first["vault_id"] == vault_id and first["retention"] == {"days": 30}
    assert len(first["times"]) == 3
    assert first["times"][0] == scheduled["backups"]["next"]["scheduled_time"]
    assert entries[1]["times"] is None
    assert entries[1]["inclusions"] == [{"type": "folder", "path": "/etc/"}]


def test_working_document_of_unknown_or_foreign_agent_is_404(client, db):
    secret = token(db)
    for agent_id in ("nope", rows.agent(db, OTHER_PROJECT).id):
        response = client.get(f"{BASE}/agents/{agent_id}/configuration", headers=headers(secret))
        assert response.status_code == 404
