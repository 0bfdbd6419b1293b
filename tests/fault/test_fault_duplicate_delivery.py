"""Duplicate delivery for real: with a 2 s visibility timeout Redis hands a still-running backup
task to the second worker again and again. The compare-and-set claim and the fresh heartbeat make
every extra delivery back off; the backup runs once."""

from __future__ import annotations

import re

import pytest

from cloudbackup.engine import open_vault
from factories.api import start_backup, token
from factories.trees import make_tree

pytestmark = pytest.mark.slow


def test_a_task_redelivered_while_it_runs_does_not_run_the_backup_twice(stack, tmp_path):
    # 30 MiB at 3 MiB/s: about 10 s, five visibility timeouts.
    tree = make_tree(tmp_path / "src", files=10, big_files=3, big_size=10 * 1024 * 1024)
    config = stack.configuration(tree.root)
    short = {
        "CLOUDBACKUP_BROKER_VISIBILITY_TIMEOUT": "2",
        "CLOUDBACKUP_BACKUP_MAX_BPS": str(3 * 1024 * 1024),
        "CLOUDBACKUP_HEARTBEAT_TIMEOUT_SECONDS": "60",
    }
    first = stack.worker("first", **short)
    with stack.api() as api:
        created = start_backup(api, token(stack.db), config.id)
        assert created.status_code == 201, created.text
    backup_id = created.json()["id"]
    stack.wait(backup_id, lambda b: b.state == "in_progress", timeout=60, what="running")
    second = stack.worker("second", **short)
    final = stack.wait(backup_id, timeout=120)

    task = re.search(r"run_backup\[([0-9a-f-]+)\] received", first.log_path.read_text())
    assert task, stack.logs()
    redelivered = second.log_path.read_text().count(f"run_backup[{task.group(1)}] received")
    assert redelivered >= 1, stack.logs()  # Redis really delivered it a second time
    assert final.state == "completed" and final.attempts == 1, stack.logs()
    events = stack.events(backup_id)
    assert events.count("backup_queued") == 1 and events.count("backup_completed") == 1, events
    vault = open_vault(stack.settings, final.vault_id, create=False)
    assert vault.list_snapshots() == [final.snapshot_id]
