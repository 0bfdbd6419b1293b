"""Fault 2: Redis (the broker) is stopped while clients start backups, then comes back empty.

The API commits each backup before it publishes, so every POST still gets its 201 (after a
bounded wait for the dead broker). The restarted Redis has lost every queued message; the
sweeper (real `celery beat`) re-publishes what no worker claimed, and the worker reconnects by
itself. Every 201 backup runs, exactly once.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from factories.api import start_backup, token
from factories.trees import make_tree

pytestmark = pytest.mark.slow


def test_every_backup_accepted_while_redis_is_down_runs_once_it_is_back(stack, tmp_path):
    tree = make_tree(tmp_path / "src", files=6, with_excluded=False)
    configs = [stack.configuration(tree.root) for _ in range(12)]
    stack.worker("worker", concurrency=2)
    stack.beat()
    secret = token(stack.db)
    accepted: list[str] = []

    def post(config) -> tuple[int, float, str]:
        began = time.monotonic()
        response = start_backup(api, secret, config.id)
        body = response.json()
        return response.status_code, time.monotonic() - began, body.get("id", response.text)

    with stack.api() as api:
        for config in configs[:3]:  # the broker is up: business as usual
            status, _, backup_id = post(config)
            assert status == 201
            accepted.append(backup_id)

        stack.redis.stop()  # SIGKILL: queued messages are lost with it
        with ThreadPoolExecutor(4) as pool:
            during = list(pool.map(post, configs[3:]))
        assert [status for status, _, _ in during] == [201] * len(configs[3:])
        assert max(seconds for _, seconds, _ in during) < 15  # a bounded wait, never a hang
        accepted += [backup_id for _, _, backup_id in during]
        for backup_id in accepted[3:]:
            assert stack.backup(backup_id).state == "start_requested"

        time.sleep(2)  # the worker and beat notice the outage too
        stack.redis.start()  # same port, empty

        finals = [stack.wait(backup_id, timeout=150) for backup_id in accepted]

    assert len(accepted) == len(configs) == len(set(accepted))
    assert [row.state for row in finals] == ["completed"] * len(accepted), stack.logs()
    for row in finals:
        events = stack.events(row.id)
        assert events.count("backup_queued") == 1, (row.id, events)  # claimed once
        assert events.count("backup_completed") == 1, (row.id, events)  # ran once
        assert row.attempts == 1
        assert row.files_searched == tree.files
