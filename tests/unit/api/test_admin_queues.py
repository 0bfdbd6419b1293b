"""`/v2/admin/queues` (operator only), `/metrics`, routing by agent pins, and JSON log lines."""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta

import msgspec
import pytest
import redis
import sqlalchemy as sa
from litestar.testing import TestClient

from cloudbackup import logs
from cloudbackup.domain import admission
from cloudbackup.queue.admin import QueueAdmin
from cloudbackup.queue.names import QueueNames
from cloudbackup.queue.publishing import CeleryDispatcher
from cloudbackup.server import create_app
from cloudbackup.store import agent_pins
from cloudbackup.store.tables import QUEUE_SETTINGS, utcnow
from cloudbackup.store.worker_heartbeats import record_heartbeat
from factories import rows
from factories.api import headers, start_backup, token

OPERATOR = "operator"


@pytest.fixture
def broker(settings):
    client = redis.Redis.from_url(settings.broker_url)
    names = QueueNames(settings.backup_queue)
    yield client, names
    client.delete(*names.shared())


def _operator(db, role: str = "admin") -> dict[str, str]:
    return headers(token(db, OPERATOR, role))


def test_only_operator_tokens_may_administer_queues(client, db):
    assert client.get("/v2/admin/queues").status_code == 401
    tenant_admin = client.get("/v2/admin/queues", headers=headers(token(db)))
    assert tenant_admin.status_code == 403
    assert "operator project" in tenant_admin.json()["message"]
    assert client.get("/v2/admin/queues", headers=_operator(db, "observer")).status_code == 200
    patch = client.patch(
        "/v2/admin/queues/x",
        content=b'[{"op": "replace", "path": "/paused", "value": true}]',
        headers={**_operator(db, "observer"), "Content-Type": "application/json-patch+json"},
    )
    assert patch.status_code == 403


def test_queues_show_depth_oldest_age_settings_and_workers(client, db, settings, broker):
    redis_client, names = broker
    agent = rows.agent(db)
    secret = token(db)
    for _ in range(2):
        config = rows.configuration(db, agent)
        assert start_backup(client, secret, config.id).status_code == 201
    record_heartbeat(
        db,
        hostname="w1@host",
        queues=names.shared(),
        concurrency=2,
        running=[{"task": "cloudbackup.run_backup", "id": "t1", "args": ["b1"]}],
        pid=42,
        agent_id=None,
        started_at=utcnow(),
    )
    record_heartbeat(
        db,
        hostname="old@host",
        queues=[names.manual],
        concurrency=1,
        running=[],
        pid=7,
        agent_id=None,
        started_at=utcnow() - timedelta(days=1),
    )
    with db.transaction() as session:  # a stale heartbeat: offline
        session.execute(
            sa.text("UPDATE worker_heartbeats SET last_seen = :t WHERE hostname = 'old@host'"),
            {"t": utcnow() - timedelta(minutes=5)},
        )
    body = client.get("/v2/admin/queues", headers=_operator(db)).json()
    queues = {q["name"]: q for q in body["queues"]}
    assert list(queues)[:4] == [names.webhooks, names.maintenance, names.manual, names.scheduled]
    manual = queues[names.manual]
    assert manual["kind"] == "manual" and manual["depth"] == 2
    assert 0 <= manual["oldest_age_seconds"] < 60
    assert manual["consumers"] == ["w1@host"]
    assert queues[names.scheduled]["depth"] == 0
    assert queues[names.scheduled]["oldest_age_seconds"] is None
    workers = {w["hostname"]: w for w in body["workers"]}
    assert workers["w1@host"]["online"] and not workers["old@host"]["online"]
    assert workers["w1@host"]["running"][0]["args"] == ["b1"]
    assert redis_client.llen(names.manual) == 2


def test_pause_resume_and_concurrency_persist_and_release_waiting_runs(
    client, db, settings, broker
):
    redis_client, names = broker
    url = f"/v2/admin/queues/{names.manual}"
    patch_headers = {**_operator(db), "Content-Type": "application/json-patch+json"}

    def patch(ops):
        return client.patch(url, content=json.dumps(ops).encode(), headers=patch_headers)

    answer = patch([{"op": "replace", "path": "/paused", "value": True}])
    assert answer.status_code == 200, answer.text
    assert answer.json()["paused"] is True
    # Persisted: a new admin (another process, after a restart) sees it.
    assert QueueAdmin(db, settings).queue(names.manual).paused

    agent = rows.agent(db)
    backup = start_backup(client, token(db), rows.configuration(db, agent).id).json()
    assert not admission.admit(db, settings, backup["id"], names.manual).run
    assert client.get(url, headers=_operator(db)).json()["waiting"] == 1
    redis_client.delete(names.manual)

    answer = patch(
        [
            {"op": "replace", "path": "/paused", "value": False},
            {"op": "replace", "path": "/concurrency", "value": 3},
        ]
    )
    assert answer.json()["paused"] is False and answer.json()["concurrency"] == 3
    assert redis_client.llen(names.manual) == 1  # the waiting run was offered again at once
    assert (
        patch([{"op": "replace", "path": "/concurrency", "value": None}]).json()["concurrency"]
        is None
    )


@pytest.mark.parametrize(
    ("ops", "status"),
    [
        ([{"op": "replace", "path": "/concurrency", "value": 0}], 400),
        ([{"op": "replace", "path": "/concurrency", "value": "2"}], 400),
        ([{"op": "replace", "path": "/paused", "value": "yes"}], 400),
        ([{"op": "replace", "path": "/name", "value": "x"}], 400),
        ([{"op": "add", "path": "/paused", "value": True}], 400),
        ([], 400),
    ],
)
def test_bad_queue_changes_are_400_and_change_nothing(client, db, settings, ops, status):
    name = QueueNames(settings.backup_queue).manual
    answer = client.patch(
        f"/v2/admin/queues/{name}",
        content=json.dumps(ops).encode(),
        headers={**_operator(db), "Content-Type": "application/json-patch+json"},
    )
    assert answer.status_code == status, answer.text
    assert answer.json()["message"]
    with db.transaction() as session:
        assert session.execute(sa.select(QUEUE_SETTINGS)).all() == []


def test_unknown_queue_is_404_and_wrong_content_type_400(client, db):
    ok = {**_operator(db), "Content-Type": "application/json-patch+json"}
    body = b'[{"op": "replace", "path": "/paused", "value": true}]'
    assert client.patch("/v2/admin/queues/nope", content=body, headers=ok).status_code == 404
    assert client.get("/v2/admin/queues/nope", headers=_operator(db)).status_code == 404
    wrong = client.patch("/v2/admin/queues/nope", content=body, headers=_operator(db))
    assert wrong.status_code == 400


def test_pinned_agents_get_their_own_queues_others_the_shared_ones(client, db, settings, broker):
    redis_client, names = broker
    pinned, shared = rows.agent(db), rows.agent(db)
    agent_pins.pin_agent(db, pinned.id)
    secret = token(db)
    dispatcher = CeleryDispatcher.from_settings(settings, database=db)
    app = create_app(settings, database=db, dispatcher=dispatcher)
    with TestClient(app=app) as api:
        assert start_backup(api, secret, rows.configuration(db, pinned).id).status_code == 201
        assert start_backup(api, secret, rows.configuration(db, shared).id).status_code == 201
    assert redis_client.llen(names.agent(pinned.id)) == 1
    assert redis_client.llen(names.manual) == 1
    assert dispatcher.scheduled().queue_for("backup", pinned.id) == names.agent(
        pinned.id, "scheduled"
    )
    assert dispatcher.scheduled().queue_for("backup", shared.id) == names.scheduled
    assert dispatcher.queue_for("cleanup", pinned.id) == names.maintenance
    queues = {
        q["name"]: q for q in client.get("/v2/admin/queues", headers=_operator(db)).json()["queues"]
    }
    assert queues[names.agent(pinned.id)]["kind"] == "agent"
    assert queues[names.agent(pinned.id)]["agent_id"] == pinned.id
    assert queues[names.agent(pinned.id)]["depth"] == 1
    redis_client.delete(*names.for_agent(pinned.id))


def test_metrics_are_computed_from_the_database_and_the_broker(client, db, settings, broker):
    agent = rows.agent(db)
    config = rows.configuration(db, agent)
    now = utcnow()
    rows.backup(
        db,
        config.id,
        state="completed",
        started_time=now - timedelta(seconds=90),
        ended_time=now,
        bytes_backed_up=5 * 2**20,
        snapshot_id=1,
        restorable=True,
    )
    rows.backup(db, config.id, state="failed", started_time=now, ended_time=now)
    assert start_backup(client, token(db), rows.configuration(db, agent).id).status_code == 201
    text = client.get("/metrics", headers=_operator(db, "observer")).text
    assert 'cloudbackup_backups{state="completed"} 1.0' in text
    assert 'cloudbackup_backups{state="start_requested"} 1.0' in text
    assert 'cloudbackup_backups{state="missed"} 0.0' in text
    assert 'cloudbackup_backup_duration_seconds_bucket{le="60",state="completed"} 0.0' in text
    assert 'cloudbackup_backup_duration_seconds_bucket{le="300",state="completed"} 1.0' in text
    assert 'cloudbackup_backup_duration_seconds_count{state="failed"} 1.0' in text
    assert 'cloudbackup_backup_bytes_bucket{le="1048576",state="completed"} 0.0' in text
    assert 'cloudbackup_backup_bytes_bucket{le="16777216",state="completed"} 1.0' in text
    manual = QueueNames(settings.backup_queue).manual
    assert f'cloudbackup_queue_depth{{queue="{manual}"}} 1.0' in text
    assert f'cloudbackup_queue_oldest_age_seconds{{queue="{manual}"}}' in text
    assert "cloudbackup_schedule_lag_seconds 0.0" in text
    route = 'route="/v2/{project_id}/backups"'
    assert (
        f'cloudbackup_http_request_duration_seconds_count{{method="POST",{route},status="201"}}'
        in text
    )


def test_metrics_token_when_configured(db, settings):
    guarded = msgspec.structs.replace(settings, metrics_token="s3cret")
    app = create_app(guarded, database=db, dispatcher=CeleryDispatcher.from_settings(guarded))
    with TestClient(app=app) as api:
        refused = api.get("/metrics")
        assert refused.status_code == 401 and refused.json()["message"]
        assert api.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        ok = api.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and "cloudbackup_backups" in ok.text


@pytest.fixture
def json_lines(monkeypatch):
    """Our logging set-up writing JSON into a buffer; removed again afterwards."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    level = root.level
    logs.configure_logging("DEBUG", "json")
    yield stream
    for handler in [h for h in root.handlers if isinstance(h, logs._OurHandler)]:
        root.removeHandler(handler)
    root.setLevel(level)


def test_log_lines_are_json_with_the_ids_they_are_about(client, db, json_lines):
    agent = rows.agent(db)
    config = rows.configuration(db, agent)
    backup = start_backup(client, token(db), config.id).json()
    client.get(f"/v2/{agent.project_id}/backups/{backup['id']}", headers=headers(token(db)))
    logging.getLogger("cloudbackup.test").info("outside any request")
    stream = json_lines
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert all({"backup_id", "project_id", "agent_id"} <= set(line) for line in lines)
    read = [line for line in lines if line.get("backup_id") == backup["id"]]
    assert read and read[0]["project_id"] == agent.project_id
    last = lines[-1]
    assert last["message"] == "outside any request" and last["project_id"] is None
