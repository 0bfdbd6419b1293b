"""`/metrics` is for the operator: an operator token, the metrics bearer token, or opened on purpose.

Its figures are cached for a few seconds, so a storm of scrapes costs one set of queries.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from cloudbackup.queue.publishing import CeleryDispatcher
from cloudbackup.server import create_app
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from factories.api import token

BEARER = "metrics-s3cret"


def _api(settings: Settings, db: Database, **changes: Any) -> TestClient:  # type: ignore[type-arg]
    changed = msgspec.structs.replace(settings, **changes)
    app = create_app(changed, database=db, dispatcher=CeleryDispatcher.from_settings(changed))
    return TestClient(app=app)


@pytest.fixture
def guarded(settings: Settings, db: Database) -> Iterator[TestClient]:  # type: ignore[type-arg]
    with _api(settings, db, metrics_token=BEARER) as api:
        yield api


def test_metrics_without_credentials_is_a_json_401(client):
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/json")
    assert "operator project" in refused.json()["message"]


def test_a_tenants_token_cannot_read_metrics(client, db):
    assert client.get("/metrics", headers={"X-Auth-Token": token(db)}).status_code == 401


def test_an_operator_token_reads_metrics(client, db, settings):
    secret = token(db, settings.admin_project, "observer")
    ok = client.get("/metrics", headers={"X-Auth-Token": secret})
    assert ok.status_code == 200 and "cloudbackup_backups" in ok.text


def test_the_metrics_bearer_token_reads_metrics(guarded):
    assert guarded.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = guarded.get("/metrics", headers={"Authorization": f"Bearer {BEARER}"})
    assert ok.status_code == 200 and "cloudbackup_backups" in ok.text


def test_metrics_public_opens_it_without_credentials(settings, db):
    with _api(settings, db, metrics_public=True) as api:
        ok = api.get("/metrics")
    assert ok.status_code == 200 and "cloudbackup_backups" in ok.text


def test_two_scrapes_within_the_cache_window_query_the_database_once(guarded, db):
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        for _ in range(2):
            scrape = guarded.get("/metrics", headers={"Authorization": f"Bearer {BEARER}"})
            assert scrape.status_code == 200
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    backups = [s for s in statements if "FROM backups" in s]
    assert backups, "the first scrape reads the backups table"
    first_scrape = len(backups)
    assert first_scrape == 3  # by state, durations, sizes: the second scrape added none
