"""`Idempotency-Key` on POST: retries get the first response, never a second resource."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import redis
import sqlalchemy as sa
from litestar.testing import TestClient

from cloudbackup.domain.sweeper import sweep
from cloudbackup.server import create_app
from cloudbackup.store.tables import Backup, IdempotencyKey, utcnow
from factories import rows
from factories.api import (
    OTHER_PROJECT,
    PROJECT,
    agent_body,
    configuration_body,
    headers,
    start_backup,
    token,
)


@pytest.fixture
def setup(client, db):
    agent = rows.agent(db)
    config = rows.configuration(db, agent)
    return agent, config, token(db)


def backups_of(db, configuration_id: str | None = None) -> int:
    with db.transaction() as session:
        query = sa.select(sa.func.count()).select_from(Backup)
        if configuration_id:
            query = query.where(Backup.configuration_id == configuration_id)
        return session.execute(query).scalar_one()


def queued(settings) -> int:
    return redis.Redis.from_url(settings.broker_url).llen(settings.backup_queue)


def keyed(secret: str, key: str, **extra: str) -> dict[str, str]:
    return headers(secret, **{"Idempotency-Key": key}, **extra)


def test_a_retried_start_returns_the_first_response_and_starts_one_backup(
    client, setup, db, settings
):
    _, config, secret = setup
    body = {"configuration_id": config.id, "state": "start_requested"}
    first = client.post(f"/v2/{PROJECT}/backups", json=body, headers=keyed(secret, "k-1"))
    again = client.post(f"/v2/{PROJECT}/backups", json=body, headers=keyed(secret, "k-1"))

    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["content-type"] == "application/json"
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert backups_of(db) == 1
    assert queued(settings) == 1  # published once: a replay dispatches nothing
    # Without the header the rules of B1 apply as before: a second manual run is refused.
    assert start_backup(client, secret, config.id).status_code == 409


def test_the_same_key_with_another_body_is_422_and_changes_nothing(client, setup, db):
    agent, config, secret = setup
    other = rows.configuration(db, agent)
    url = f"/v2/{PROJECT}/backups"
    body = {"configuration_id": config.id, "state": "start_requested"}
    assert client.post(url, json=body, headers=keyed(secret, "k-2")).status_code == 201
    changed = {"configuration_id": other.id, "state": "start_requested"}
    response = client.post(url, json=changed, headers=keyed(secret, "k-2"))

    assert response.status_code == 422
    assert response.json() == {
        "message": "This Idempotency-Key was already used with a different request."
    }
    assert backups_of(db, other.id) == 0


def test_keys_are_scoped_to_project_and_path(client, setup, db):
    agent, config, secret = setup
    theirs = rows.configuration(db, rows.agent(db, project_id=OTHER_PROJECT))
    their_secret = token(db, project_id=OTHER_PROJECT)
    mine = client.post(
        f"/v2/{PROJECT}/backups",
        json={"configuration_id": config.id, "state": "start_requested"},
        headers=keyed(secret, "shared"),
    )
    other_project = client.post(
        f"/v2/{OTHER_PROJECT}/backups",
        json={"configuration_id": theirs.id, "state": "start_requested"},
        headers=keyed(their_secret, "shared"),
    )
    other_path = client.post(
        f"/v2/{PROJECT}/configurations",
        json=configuration_body(agent.id),
        headers=keyed(secret, "shared"),
    )
    assert mine.status_code == other_project.status_code == other_path.status_code == 201
    assert mine.json()["id"] != other_project.json()["id"]
    assert "idempotent-replayed" not in other_project.headers
    assert "idempotent-replayed" not in other_path.headers


def test_configurations_are_idempotent_too(client, setup, db):
    agent, _, secret = setup
    url = f"/v2/{PROJECT}/configurations"
    first = client.post(url, json=configuration_body(agent.id), headers=keyed(secret, "cfg"))
    again = client.post(url, json=configuration_body(agent.id), headers=keyed(secret, "cfg"))
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    listed = client.get(url, headers=headers(secret)).json()["configurations"]
    assert len(listed) == 2  # the fixture's configuration and this one, once


def test_a_failed_first_request_keeps_nothing(client, setup, db):
    _, config, secret = setup
    url = f"/v2/{PROJECT}/backups"
    bad = client.post(
        url, json={"configuration_id": config.id, "state": "nope"}, headers=keyed(secret, "k-3")
    )
    assert bad.status_code == 400
    fixed = {"configuration_id": config.id, "state": "start_requested"}
    response = client.post(url, json=fixed, headers=keyed(secret, "k-3"))
    assert response.status_code == 201, response.text
    assert "idempotent-replayed" not in response.headers
    assert backups_of(db) == 1


def test_requests_that_fail_authentication_or_roles_keep_nothing(client, setup, db):
    _, config, secret = setup
    body = {"configuration_id": config.id, "state": "start_requested"}
    url = f"/v2/{PROJECT}/backups"
    assert client.post(url, json=body, headers=keyed("0" * 32, "k-4")).status_code == 401
    observer = token(db, role="observer")
    assert client.post(url, json=body, headers=keyed(observer, "k-4")).status_code == 403
    assert client.post(url, json=body, headers=keyed(secret, "k-4")).status_code == 201
    assert count_keys(db) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "a\tb"])
def test_malformed_keys_are_400(client, setup, key):
    _, config, secret = setup
    response = client.post(
        f"/v2/{PROJECT}/backups",
        json={"configuration_id": config.id, "state": "start_requested"},
        headers={**headers(secret), "Idempotency-Key": key.encode("utf-8")},
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [
        "Idempotency-Key must be 1 to 255 printable ASCII characters."
    ]


def test_agent_registration_never_stores_its_password(client, db):
    secret = token(db)
    url = f"/v2/{PROJECT}/agents"
    first = client.post(url, json=agent_body(), headers=keyed(secret, "agent"))
    second = client.post(url, json=agent_body(), headers=keyed(secret, "agent"))
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]  # the header is ignored on A1
    assert count_keys(db) == 0


class BlockingDispatcher:
    """Publishes only when released: keeps the first request in flight."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.published: list[str] = []

    def publish(self, kind: str, resource_id: str, *, agent_id: str | None = None) -> bool:
        self.entered.set()
        assert self.release.wait(60)
        self.published.append(resource_id)
        return True


def test_a_duplicate_arriving_while_the_first_runs_is_409_then_replayed(settings, db):
    dispatcher = BlockingDispatcher()
    app = create_app(settings, database=db, dispatcher=dispatcher)
    config = rows.configuration(db, rows.agent(db))
    secret = token(db)
    body = {"configuration_id": config.id, "state": "start_requested"}
    url = f"/v2/{PROJECT}/backups"
    with TestClient(app=app) as client, ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.post, url, json=body, headers=keyed(secret, "race"))
        assert dispatcher.entered.wait(60)
        during = client.post(url, json=body, headers=keyed(secret, "race"))
        dispatcher.release.set()
        assert first.result(60).status_code == 201  # stored before the retry arrives
        after = client.post(url, json=body, headers=keyed(secret, "race"))

    assert during.status_code == 409
    assert during.json()["message"].startswith("A request with this Idempotency-Key is still")
    assert after.status_code == 201 and after.json() == first.result().json()
    assert len(dispatcher.published) == 1 and backups_of(db) == 1


def test_concurrent_duplicates_create_exactly_one_backup(client, setup, db):
    _, config, secret = setup
    body = {"configuration_id": config.id, "state": "start_requested"}
    url = f"/v2/{PROJECT}/backups"
    with ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(
                lambda _: client.post(url, json=body, headers=keyed(secret, "burst")), range(8)
            )
        )
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {201, 409}, [r.text for r in responses]
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(created) == 1
    assert backups_of(db) == 1


def test_abandoned_and_expired_keys_are_reused_and_purged_by_the_sweeper(
    client, setup, db, settings
):
    _, config, secret = setup
    url = f"/v2/{PROJECT}/backups"
    body = {"configuration_id": config.id, "state": "start_requested"}
    first = client.post(url, json=body, headers=keyed(secret, "old"))
    assert first.status_code == 201
    # The first request's process died before it answered: its reservation is abandoned.
    with db.transaction() as session:
        session.execute(
            sa.update(IdempotencyKey).values(
                status=None, created_at=utcnow() - timedelta(minutes=5)
            )
        )
    retried = client.post(url, json=body, headers=keyed(secret, "old"))
    assert retried.status_code == 409  # it ran again: the backup of the first one is active
    assert "already in progress" in retried.json()["message"]
    assert count_keys(db) == 0  # that failure kept nothing

    # A kept response past its retention is forgotten: the key works again, then is purged.
    agent = rows.agent(db)
    cfg_url = f"/v2/{PROJECT}/configurations"
    kept = client.post(cfg_url, json=configuration_body(agent.id), headers=keyed(secret, "cfg"))
    aged = utcnow() - timedelta(seconds=settings.idempotency_ttl_seconds + 1)
    with db.transaction() as session:
        session.execute(sa.update(IdempotencyKey).values(created_at=aged))
    fresh = client.post(cfg_url, json=configuration_body(agent.id), headers=keyed(secret, "cfg"))
    assert fresh.status_code == 201 and fresh.json()["id"] != kept.json()["id"]
    with db.transaction() as session:
        session.execute(sa.update(IdempotencyKey).values(created_at=aged))
    report = sweep(db, _NullDispatcher(), settings)
    assert report.idempotency_keys_purged == 1
    assert count_keys(db) == 0


def count_keys(db) -> int:
    with db.transaction() as session:
        return session.execute(sa.select(sa.func.count()).select_from(IdempotencyKey)).scalar_one()


class _NullDispatcher:
    def publish(self, kind: str, resource_id: str, *, agent_id: str | None = None) -> bool:
        return True


def test_keys_are_scoped_to_the_caller_too(client, setup, db):
    """Another token of the same project with the same key gets its own answer, never the
    first caller's (which may hold what only that caller may see)."""
    agent, config, secret = setup
    other_config = rows.configuration(db, agent)
    colleague = token(db)
    url = f"/v2/{PROJECT}/backups"
    mine = client.post(
        url,
        json={"configuration_id": config.id, "state": "start_requested"},
        headers=keyed(secret, "team-key"),
    )
    theirs = client.post(
        url,
        json={"configuration_id": other_config.id, "state": "start_requested"},
        headers=keyed(colleague, "team-key"),
    )
    assert mine.status_code == theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]
    assert backups_of(db) == 2
