"""Webhooks end to end on the real PostgreSQL and Redis: the API writes events, a real Celery
worker sends them, real beat re-publishes due retries, and a real HTTP receiver process on
loopback checks every signature. The receiver is down for a while (connections refused) and the
worker is restarted meanwhile; once the receiver is back, every event has arrived, signed."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from litestar.testing import TestClient

from cloudbackup.queue.names import QueueNames
from cloudbackup.queue.publishing import CeleryDispatcher
from cloudbackup.server import create_app
from cloudbackup.settings import load_settings
from factories.api import headers, token
from factories.private_services import BeatProcess, _Process, free_port
from factories.services import REDIS_URL, ROOT, WorkerProcess

pytestmark = pytest.mark.slow
PROJECT = "990099"  # this test's own project: no other test's events reach its webhook


class ReceiverProcess(_Process):
    """``tests/factories/webhook_receiver.py`` as its own process, logging each POST."""

    def __init__(self, port: int, secret: str, log_path: Path, out: Path) -> None:
        script = ROOT / "tests" / "factories" / "webhook_receiver.py"
        argv = [sys.executable, str(script), "--port", str(port), "--secret", secret]
        super().__init__([*argv, "--log", str(out)], {}, log_path)
        self.port = port

    def start(self) -> ReceiverProcess:  # type: ignore[override]
        super().start()
        import socket

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"receiver not listening; log:\n{self.log()[-2000:]}")


def received(out: Path) -> list[dict[str, Any]]:
    """The receiver's records so far (a line it is still writing is left for the next read)."""
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().split("\n")[:-1] if line.strip()]


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout} s")


@pytest.fixture
def hooks_env(integration_env: dict[str, str]) -> dict[str, str]:
    return {
        **integration_env,
        "CLOUDBACKUP_BACKUP_QUEUE": f"hooks-{uuid.uuid4().hex[:8]}",
        "CLOUDBACKUP_WEBHOOK_ALLOW_PRIVATE": "true",
        "CLOUDBACKUP_WEBHOOK_FIRST_RETRY_SECONDS": "2",
        "CLOUDBACKUP_WEBHOOK_SWEEP_SECONDS": "1",
        "CLOUDBACKUP_WEBHOOK_TIMEOUT_SECONDS": "3",
    }


def test_every_event_arrives_signed_after_receiver_downtime_and_a_worker_restart(
    hooks_env, pg_db, tmp_path
):
    settings = load_settings(hooks_env)
    broker = redis.Redis.from_url(REDIS_URL)
    broker.delete(*QueueNames(settings.backup_queue).shared())
    app = create_app(settings, database=pg_db, dispatcher=CeleryDispatcher.from_settings(settings))
    worker = WorkerProcess(hooks_env, tmp_path / "worker.log", name="hooks").start()
    beat = BeatProcess(hooks_env, tmp_path / "beat.log")
    beat.start()
    port = free_port()
    out = tmp_path / "received.jsonl"
    receiver: ReceiverProcess | None = None
    try:
        with TestClient(app=app) as api:
            secret = token(pg_db, PROJECT)
            hook = api.post(
                f"/v2/{PROJECT}/webhooks",
                json={"url": f"http://127.0.0.1:{port}/hook", "events": ["*"]},
                headers=headers(secret),
            ).json()
            receiver = ReceiverProcess(port, hook["secret"], tmp_path / "recv.log", out).start()

            def post_events(count: int) -> None:
                for i in range(count):
                    response = api.post(
                        f"/v2/{PROJECT}/events",
                        json={"event": "agent_activate", "mode": ("active", "idle")[i % 2]},
                        headers=headers(secret),
                    )
                    assert response.status_code == 202

            post_events(10)
            wait_until(lambda: len(received(out)) >= 10, 30, "the first 10 events arrive")

            receiver.stop()  # down: connections are refused
            post_events(15)
            wait_until(
                lambda: _failed_attempts(api, secret, hook["id"]) >= 15,
                30,
                "every event sent while the receiver is down fails once",
            )
            worker.stop()  # a worker restart while deliveries wait for their retries
            post_events(5)  # written while no worker runs at all
            worker = WorkerProcess(hooks_env, tmp_path / "worker2.log", name="hooks2").start()
            time.sleep(3)
            receiver = ReceiverProcess(port, hook["secret"], tmp_path / "recv.log", out).start()

            events = api.get(
                f"/v2/{PROJECT}/events", params={"sort_dir": "asc"}, headers=headers(secret)
            ).json()["events"]
            assert len(events) == 30
            expected = {e["id"] for e in events}
            wait_until(
                lambda: expected <= {r["id"] for r in received(out)},
                90,
                "every event arrives once the receiver is back",
            )
            got = received(out)
            assert all(r["valid"] for r in got), [r for r in got if not r["valid"]]
            bodies = {r["id"]: json.loads(r["body"]) for r in got}
            assert [bodies[e["id"]] for e in events] == events  # the event lists' documents

            deliveries = api.get(
                f"/v2/{PROJECT}/webhooks/{hook['id']}/deliveries",
                params={"limit": "100"},
                headers=headers(secret),
            ).json()["deliveries"]
            assert {d["state"] for d in deliveries} == {"delivered"}
            retried = [d for d in deliveries if d["attempts"] > 1]
            assert len(retried) >= 15
            for d in retried:
                log = d["attempt_log"]
                assert [a["status"] for a in log][-1] == "delivered"
                assert all(a["next_attempt_time"] for a in log[:-1])
    finally:
        if receiver is not None:
            receiver.stop()
        beat.stop()
        worker.stop()


def _failed_attempts(api: Any, secret: str, webhook_id: str) -> int:
    deliveries = api.get(
        f"/v2/{PROJECT}/webhooks/{webhook_id}/deliveries",
        params={"limit": "100"},
        headers=headers(secret),
    ).json()["deliveries"]
    return sum(1 for d in deliveries if d["last_status_code"] is None and d["attempts"] >= 1)


def test_b1_on_postgresql_queues_the_start_events_delivery_in_its_one_statement(hooks_env, pg_db):
    """The asyncpg fast path (one statement of CTEs) writes the delivery and publishes it."""
    import sqlalchemy as sa

    from cloudbackup.store.tables import WebhookDelivery
    from factories import rows

    settings = load_settings(hooks_env)
    broker = redis.Redis.from_url(REDIS_URL)
    queue = QueueNames(settings.backup_queue).webhooks
    broker.delete(queue)
    project = "880088"
    app = create_app(settings, database=pg_db, dispatcher=CeleryDispatcher.from_settings(settings))
    with TestClient(app=app) as api:
        secret = token(pg_db, project)
        hook = api.post(
            f"/v2/{project}/webhooks",
            json={"url": "http://127.0.0.1:9/", "events": ["backup_start_request"]},
            headers=headers(secret),
        ).json()
        config = rows.configuration(pg_db, rows.agent(pg_db, project))
        started = api.post(
            f"/v2/{project}/backups",
            json={"configuration_id": config.id, "state": "start_requested"},
            headers=headers(secret),
        )
        assert started.status_code == 201, started.text
    with pg_db.read() as session:
        found = list(
            session.execute(
                sa.select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook["id"])
            ).scalars()
        )
    assert [d.event for d in found] == ["backup_start_request"]
    assert broker.llen(queue) == 1
