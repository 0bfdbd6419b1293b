"""Who may report on a run (B4, R4, C4, A15, EV3): only the token of the run's own agent. An
attacker holding a tenant's user token cannot forge a result, whatever X-Agent-Id says; users
keep what the spec gives them (starting, stopping, reading)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from cloudbackup.store.tables import BACKUPS, utcnow
from factories import rows
from factories.api import PROJECT, agent_token, headers, token

PATCH = {"Content-Type": "application/json-patch+json"}


def _running(db, kind: str) -> tuple[str, Any]:
    """A running run of ``kind`` and the agent that reports on it."""
    agent = rows.agent(db)
    if kind == "cleanups":
        return f"cleanups/{rows.cleanup(db, agent, state='in_progress', attempts=1).id}", agent
    config = rows.configuration(db, agent)
    if kind == "backups":
        backup = rows.backup(db, config.id, state="in_progress", heartbeat_at=utcnow(), attempts=1)
        return f"backups/{backup.id}", agent
    done = rows.backup(db, config.id, restorable=True, snapshot_id=1)
    restore = rows.restore(db, done.id, agent, state="in_progress", attempts=1)
    return f"restores/{restore.id}", agent


def _patch(client, secret: str, path: str, ops: list[dict[str, Any]], **extra: str) -> Any:
    return client.patch(
        f"/v2/{PROJECT}/{path}",
        content=json.dumps(ops).encode(),
        headers={"X-Auth-Token": secret, **PATCH, **extra},
    )


def _state(client, secret: str, path: str) -> str:
    state: str = client.get(f"/v2/{PROJECT}/{path}", headers=headers(secret)).json()["state"]
    return state


COMPLETE = [{"op": "replace", "path": "/state", "value": "completed"}]
KINDS = ["backups", "restores", "cleanups"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_users_token_cannot_report_whatever_x_agent_id_says(client, db, kind):
    path, agent = _running(db, kind)
    user = token(db)  # an admin even
    forged = _patch(client, user, path, COMPLETE, **{"X-Agent-Id": agent.id})
    assert forged.status_code == 403, forged.text
    assert "its own token" in forged.json()["message"]
    assert _state(client, user, path) == "in_progress"


@pytest.mark.parametrize("kind", KINDS)
def test_another_agents_token_cannot_report(client, db, kind):
    path, _ = _running(db, kind)
    stranger = rows.agent(db)
    forged = _patch(
        client, agent_token(db, stranger.id), path, COMPLETE, **{"X-Agent-Id": stranger.id}
    )
    assert forged.status_code == 403
    assert _state(client, token(db), path) == "in_progress"


@pytest.mark.parametrize("kind", KINDS)
def test_the_runs_own_agent_reports_and_a_user_may_still_stop(client, db, kind):
    path, agent = _running(db, kind)
    mine = agent_token(db, agent.id)
    progress = [{"op": "replace", "path": "/state", "value": "in_progress"}]
    assert _patch(client, mine, path, progress).status_code in (204, 409)
    stop = [{"op": "replace", "path": "/state", "value": "stop_requested"}]
    assert _patch(client, token(db), path, stop).status_code == 204
    assert _state(client, mine, path) == "stop_requested"
    assert _patch(client, mine, path, [{"op": "replace", "path": "/state", "value": "stopped"}])
    assert _state(client, mine, path) == "stopped"


def test_an_agent_tokens_x_agent_id_must_name_its_agent(client, db):
    agent, other = rows.agent(db), rows.agent(db)
    mine = agent_token(db, agent.id)
    answer = client.get(f"/v2/{PROJECT}/backups", headers=headers(mine, **{"X-Agent-Id": other.id}))
    assert answer.status_code == 403
    assert answer.json()["message"] == "X-Agent-Id must name the agent of this token."
    assert client.get(f"/v2/{PROJECT}/backups", headers=headers(mine)).status_code == 200


def test_a_reported_snapshot_must_be_in_the_backups_vault(client, db, settings):
    """A snapshot id the vault does not hold is refused (the run stays as it was) until the
    agent's snapshot object is there: the server tells it by name, without the vault's key."""
    path, agent = _running(db, "backups")
    mine = agent_token(db, agent.id)
    report = [*COMPLETE, {"op": "replace", "path": "/snapshot_id", "value": 9}]
    answer = _patch(client, mine, path, report)
    assert answer.status_code == 409, answer.text
    assert "not in this backup's vault" in answer.json()["message"]
    assert _state(client, mine, path) == "in_progress"
    rows.stored_snapshot(settings, agent.vault_id, 9)
    assert _patch(client, mine, path, report).status_code == 204
    assert _state(client, mine, path) == "completed"


def test_a_reported_snapshot_must_be_the_backups_own(client, db):
    """The attack of the security review: report a running backup completed with the snapshot
    of a backup kept for years, so that a cleanup later forgets the victim's data."""
    path, agent = _running(db, "backups")
    kept = rows.backup(
        db, rows.configuration(db, agent).id, restorable=True, snapshot_id=7, ended_time=utcnow()
    )
    mine = agent_token(db, agent.id)
    report = [*COMPLETE, {"op": "replace", "path": "/snapshot_id", "value": 7}]
    answer = _patch(client, mine, path, report)
    assert answer.status_code == 409
    assert "another backup's snapshot" in answer.json()["message"]
    assert _state(client, mine, path) == "in_progress"
    with db.transaction() as session:
        owners = session.execute(
            sa.select(sa.func.count()).where(BACKUPS.c.snapshot_id == 7)
        ).scalar_one()
    assert owners == 1 and kept.restorable
