"""A12 for a hosted agent, served by a real Celery worker (PostgreSQL + Redis): the worker uploads
the lines it logged about the agent, and the logfile's link downloads them (issue 13 item 3)."""

from __future__ import annotations

import gzip

import pytest

from factories import rows
from factories.api import headers, start_backup, token
from factories.trees import make_tree

pytestmark = pytest.mark.services


def test_the_worker_uploads_the_agents_log_and_the_link_downloads_it(
    api, pg_db, worker, wait_for, tmp_path
):
    tree = make_tree(tmp_path / "src", files=5, size=1_000)
    agent = rows.agent(pg_db)
    config = rows.configuration(
        pg_db, agent, inclusions=[{"type": "folder", "path": f"{tree.root}/"}]
    )
    secret = token(pg_db)
    created = start_backup(api, secret, config.id)
    backup_id = created.json()["id"]
    assert wait_for(api, created.headers["location"], headers(secret))["state"] == "completed"

    asked = api.post(f"/v2/110011/agents/{agent.id}/logfiles", headers=headers(secret))
    assert asked.status_code == 202, asked.text
    body = wait_for(
        api, asked.headers["location"], headers(secret), lambda b: b["state"] == "completed"
    )
    (link,) = [link["href"] for link in body["links"] if link["rel"] == "logfile"]
    response = api.get(link, headers=headers(secret))
    assert response.status_code == 200, response.text
    text = gzip.decompress(response.content).decode()
    assert backup_id in text  # the worker's lines about this agent's backup
    assert all(f'"agent_id": "{agent.id}"' in line for line in text.splitlines())
