"""H1-H3: health of our real dependencies, and ping. Public: no token needed (OQ-27)."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest
from litestar.testing import TestClient

from cloudbackup.queue.publishing import CeleryDispatcher
from cloudbackup.server import create_app
from cloudbackup.store.db import Database
from cloudbackup.store.tables import utcnow
from factories import rows
from factories.api import PROJECT

BASE = f"/v2/{PROJECT}"
HOST = f"http://testserver.local{BASE}"


def self_link(path: str) -> list[dict[str, str]]:
    return [{"href": f"{HOST}/health/{path}", "rel": "self"}]


def test_ping_is_204_without_a_token_or_with_a_bad_one(client):
    for extra in ({}, {"X-Auth-Token": "not-a-token"}):
        response = client.get(f"{BASE}/ping", headers=extra)
        assert response.status_code == 204
        assert response.content == b""


def test_health_is_200_when_database_broker_and_a_worker_are_up(client, db):
    rows.worker_heartbeat(db)

    response = client.get(f"{BASE}/health", headers={"X-Auth-Token": "ignored"})

    assert response.status_code == 200, response.text
    body = response.json()
    node = body["transport"]["litestar"]["node"]
    assert node
    assert body == {
        "storage": {"database": {"online": True, "links": self_link("storage/database")}},
        "queue": {"redis": {"online": True, "links": self_link("queue/redis")}},
        "workers": {"celery": {"online": True, "links": self_link("workers/celery")}},
        "transport": {
            "litestar": {"online": True, "node": node, "links": self_link("transport/litestar")}
        },
        # Optional: without CLOUDBACKUP_SMTP_URL no mail is sent, and health says so (200 still).
        "mail": {
            "smtp": {
                "online": False,
                "configured": False,
                "pending": 0,
                "failed": 0,
                "links": self_link("mail/smtp"),
            }
        },
    }


def test_health_is_503_with_the_same_shape_when_no_worker_reports(client, db):
    rows.worker_heartbeat(db, last_seen=utcnow() - timedelta(minutes=5))

    response = client.get(f"{BASE}/health")

    assert response.status_code == 503
    body = response.json()
    assert body["workers"]["celery"] == {"online": False, "links": self_link("workers/celery")}
    assert body["storage"]["database"]["online"] is True
    assert body["queue"]["redis"]["online"] is True


def test_one_dependency_by_category_and_name_or_by_name(client, db):
    rows.worker_heartbeat(db)
    for name in ("storage/database", "database", "storage/database/"):
        response = client.get(f"{BASE}/health/{name}")
        assert response.status_code == 200, name
        assert response.json() == {"online": True, "links": self_link("storage/database")}
    response = client.get(f"{BASE}/health/transport/litestar")
    assert response.json()["node"]
    unknown = client.get(f"{BASE}/health/storage/cassandra")
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "Unknown dependent system 'storage/cassandra'."
    assert "storage/database" in unknown.json()["errors"][0]


def test_a_down_dependency_is_503_on_its_own_health_too(client):
    response = client.get(f"{BASE}/health/workers/celery")  # no worker ever reported
    assert response.status_code == 503
    assert response.json() == {"online": False, "links": self_link("workers/celery")}


@pytest.fixture
def broken_app(settings, db):
    """The API with an unreachable database and broker: health must say so, quickly."""
    dead = msgspec.structs.replace(
        settings,
        broker_url="redis://127.0.0.1:1/0",
        database_url="postgresql://postgres@127.0.0.1:1/nothing",
        database_connect_timeout=1,
    )
    dead_db = Database(dead.resolved_database_url, connect_timeout=1)
    app = create_app(dead, database=dead_db, dispatcher=CeleryDispatcher.from_settings(dead))
    with TestClient(app=app) as client:
        yield client
    dead_db.dispose()


def test_an_unreachable_database_and_broker_are_reported_down(broken_app):
    response = broken_app.get(f"{BASE}/health")

    assert response.status_code == 503
    body = response.json()
    assert body["storage"]["database"]["online"] is False
    assert body["queue"]["redis"]["online"] is False
    assert body["workers"]["celery"]["online"] is False  # read from the database
    assert body["transport"]["litestar"]["online"] is True
    assert broken_app.get(f"{BASE}/ping").status_code == 204  # liveness needs none of them


def test_health_shows_mail_configured_and_reachable_without_deciding_the_status(
    db, settings, tmp_path
):
    import msgspec

    from cloudbackup.domain.health import HealthService
    from factories.mail import smtp_server

    with smtp_server(tmp_path) as server:
        configured = msgspec.structs.replace(settings, smtp_url=server.url)
        mail = HealthService(db, configured).report().find("mail/smtp")
        assert mail is not None and mail.online and mail.extra["configured"] is True
    down = HealthService(db, configured).report()
    assert down.find("mail/smtp").online is False  # the server is gone...
    assert not down.find("mail/smtp").required  # ...and that alone never makes H1 a 503


def test_the_broker_check_asks_the_ping_it_is_given(db, settings):
    from cloudbackup.domain.health import HealthService, broker_system

    name = f"queue/{broker_system(settings.broker_url)}"
    assert HealthService(db, settings, lambda: True).report().find(name).online
    assert not HealthService(db, settings, lambda: False).report().find(name).online

    def broken() -> bool:
        raise ConnectionError("no broker")

    assert not HealthService(db, settings, broken).report().find(name).online  # raising: down
