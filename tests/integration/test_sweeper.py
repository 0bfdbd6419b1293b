"""A backup recorded while the broker is unreachable still gets its 201 and runs later."""

from __future__ import annotations

import time

import msgspec
import pytest
from litestar.testing import TestClient

from cloudbackup.domain.sweeper import sweep
from cloudbackup.queue.publishing import CeleryDispatcher
from cloudbackup.server import create_app
from factories import rows
from factories.api import headers, start_backup, token
from factories.trees import make_tree

pytestmark = pytest.mark.services


def test_backup_accepted_while_broker_is_down_runs_after_a_sweep(
    pg_db, integration_settings, worker, dispatcher, wait_for, tmp_path
):
    dead = msgspec.structs.replace(
        integration_settings, broker_url="redis://127.0.0.1:1/0", broker_publish_timeout=1.0
    )
    tree = make_tree(tmp_path / "src", files=8)
    agent = rows.agent(pg_db)
    config = rows.configuration(
        pg_db,
        agent,
        inclusions=[{"type": "folder", "path": f"{tree.root}/"}],
        exclusions=[{"type": "folder", "path": f"{tree.root}/cache/"}],
    )
    secret = token(pg_db)
    app = create_app(dead, database=pg_db, dispatcher=CeleryDispatcher.from_settings(dead))
    with TestClient(app=app) as offline_api:
        began = time.monotonic()
        response = start_backup(offline_api, secret, config.id)
        assert response.status_code == 201, response.text
        assert time.monotonic() - began < 10  # the broker outage costs a bounded wait, not a hang
        url = response.headers["location"]
        time.sleep(1.0)
        assert offline_api.get(url, headers=headers(secret)).json()["state"] == "start_requested"

        eager = msgspec.structs.replace(integration_settings, sweep_after_seconds=0)
        report = sweep(pg_db, dispatcher, eager)
        assert report.republished >= 1
        body = wait_for(offline_api, url, headers(secret))
        assert body["state"] == "completed"
        assert body["files_searched"] == tree.files
