"""Fault 3: PostgreSQL stops while a backup runs and clients keep calling the API.

The API (a real `cloudbackup web` process) answers 503 with a JSON body and `Retry-After` within
a bounded time: no hang, no 500. The worker keeps backing up; the writes it cannot make are
retried, so when the database is back the same run records its result. Then the API serves
again, and nothing was recorded from the requests it refused.
"""

from __future__ import annotations

import time

import httpx
import pytest

from cloudbackup.engine import open_vault
from factories.api import headers, token
from factories.private_services import ApiProcess
from factories.trees import make_tree

pytestmark = pytest.mark.slow

PATIENT = {
    # The database is down longer than a heartbeat timeout of 3 s: this test is about retried
    # writes, not about a re-drive, so heartbeats here stay fresh for a minute.
    "CLOUDBACKUP_HEARTBEAT_TIMEOUT_SECONDS": "60",
    "CLOUDBACKUP_BACKUP_MAX_BPS": str(6 * 1024 * 1024),
}


def test_database_outage_gives_bounded_503s_and_the_running_backup_still_completes(stack, tmp_path):
    tree = make_tree(tmp_path / "src", files=10, big_files=3, big_size=10 * 1024 * 1024)
    config = stack.configuration(tree.root)
    other = stack.configuration(tree.root)
    secret = token(stack.db)
    stack.env.update(PATIENT)
    stack.worker("worker", **PATIENT)
    api = ApiProcess(stack.env, tmp_path / "api.log").start()
    stack.processes.append(api)
    base = f"{api.base_url}/v2/110011"
    auth = headers(secret)
    with httpx.Client(timeout=30) as client:
        started = client.post(
            f"{base}/backups",
            json={"configuration_id": config.id, "state": "start_requested"},
            headers=auth,
        )
        assert started.status_code == 201, started.text
        backup_id = started.json()["id"]
        stack.wait(backup_id, lambda b: b.state == "in_progress", timeout=60, what="running")

        stack.pg.stop("fast")
        down_at = time.monotonic()
        answers = []
        while time.monotonic() - down_at < 6:
            for method, url, body in (
                ("GET", f"{base}/backups/{backup_id}", None),
                ("GET", f"{base}/backups", None),
                (
                    "POST",
                    f"{base}/backups",
                    {"configuration_id": other.id, "state": "start_requested"},
                ),
            ):
                began = time.monotonic()
                response = client.request(method, url, json=body, headers=auth)
                answers.append((response, time.monotonic() - began))
        for response, seconds in answers:
            assert response.status_code == 503, response.text
            assert response.headers["content-type"].startswith("application/json")
            assert response.json()["message"].startswith("The database is")
            assert response.headers["retry-after"] == "5"
            assert seconds < 8  # the connect timeout (2 s) bounds every answer
        assert len(answers) >= 3

        stack.pg.start()
        final = stack.wait(backup_id, timeout=120)

        deadline = time.monotonic() + 20
        while (back := client.get(f"{base}/backups", headers=auth)).status_code != 200:
            assert back.status_code == 503 and time.monotonic() < deadline, back.text
            time.sleep(0.2)
        listed = back.json()["backups"]

    assert final.state == "completed", stack.logs()
    assert final.attempts == 1  # the same run finished: its writes waited for the database
    assert final.files_searched == tree.files and final.bytes_searched == tree.bytes
    assert [b["id"] for b in listed] == [backup_id]  # the refused POSTs recorded nothing
    assert "database unreachable" in stack.logs()  # the worker saw the outage and retried
    vault = open_vault(stack.settings, final.vault_id, create=False)
    assert vault.list_snapshots() == [final.snapshot_id]
