"""Fault 4: SIGTERM to a worker in the middle of a backup (a deploy, a scale-down).

Soft shutdown: the worker stops taking work, gives running tasks `worker_soft_shutdown_timeout`
to finish, then cancels them; the cancelled run hands itself back (clears its heartbeat, the
task goes back to the queue) and another worker takes it over at once, without using up an
attempt. Heartbeats here go stale only after 60 s, so a backup that completes within seconds
was handed back, not rescued by the sweeper.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from cloudbackup.engine import open_vault
from factories.api import start_backup, token
from factories.trees import make_tree

pytestmark = pytest.mark.slow

SLOW = {
    "CLOUDBACKUP_BACKUP_MAX_BPS": str(6 * 1024 * 1024),
    "CLOUDBACKUP_HEARTBEAT_TIMEOUT_SECONDS": "60",
    "CLOUDBACKUP_WORKER_SOFT_SHUTDOWN_SECONDS": "1",
}


def _start_running_backup(stack, tmp_path, first_env):
    # 60 MiB at 6 MiB/s: about 10 s of work, so that on a loaded machine the second worker's
    # start (before the signal) still leaves the run in its first half.
    tree = make_tree(tmp_path / "src", files=10, big_files=6, big_size=10 * 1024 * 1024)
    config = stack.configuration(tree.root)
    first = stack.worker("leaving", **first_env)
    with stack.api() as api:
        created = start_backup(api, token(stack.db), config.id)
        assert created.status_code == 201, created.text
    backup_id = created.json()["id"]
    stack.wait(backup_id, lambda b: b.state == "in_progress", timeout=60, what="running")
    time.sleep(0.5)  # into the first half of the run
    return first, backup_id


def _assert_handed_over(stack, backup_id, signalled_at):
    final = stack.wait(backup_id, timeout=45)
    took = time.monotonic() - signalled_at
    assert final.state == "completed", stack.logs()
    assert final.attempts == 1  # handed back, not presumed dead: no attempt used up
    assert took < 30, f"took {took:.1f} s: the run waited for its heartbeat to go stale"
    events = stack.events(backup_id)
    assert events.count("backup_completed") == 1 and "backup_failed" not in events
    vault = open_vault(stack.settings, final.vault_id, create=False)
    assert vault.list_snapshots() == [final.snapshot_id]
    return final


def test_sigterm_to_the_main_process_hands_the_backup_to_another_worker(stack, tmp_path):
    # As Kubernetes and Docker do: SIGTERM to PID 1 only; REMAP_SIGTERM=SIGQUIT turns it into
    # Celery's soft shutdown (see docs/reliability.md).
    first, backup_id = _start_running_backup(stack, tmp_path, {**SLOW, "REMAP_SIGTERM": "SIGQUIT"})
    stack.worker("staying", **SLOW)
    os.kill(first.process.pid, signal.SIGTERM)
    signalled = time.monotonic()
    first.process.wait(timeout=30)  # the worker really leaves
    assert "handed back" in first.log_path.read_text(), stack.logs()
    _assert_handed_over(stack, backup_id, signalled)


def test_sigterm_to_the_whole_process_group_hands_the_backup_back_too(stack, tmp_path):
    # As systemd does by default (KillMode=control-group): every process gets SIGTERM, the pool
    # process included, which hands its backup back; the warm shutdown then ends quickly.
    first, backup_id = _start_running_backup(stack, tmp_path, SLOW)
    stack.worker("staying", **SLOW)
    os.killpg(first.process.pid, signal.SIGTERM)
    signalled = time.monotonic()
    first.process.wait(timeout=30)
    assert "handed back" in first.log_path.read_text(), stack.logs()
    _assert_handed_over(stack, backup_id, signalled)


def test_a_backup_that_ends_within_the_soft_shutdown_window_finishes_where_it_runs(stack, tmp_path):
    tree = make_tree(tmp_path / "src", files=10, big_files=1, big_size=6 * 1024 * 1024)
    config = stack.configuration(tree.root)
    patient = {**SLOW, "REMAP_SIGTERM": "SIGQUIT", "CLOUDBACKUP_WORKER_SOFT_SHUTDOWN_SECONDS": "8"}
    first = stack.worker("patient", **patient)
    with stack.api() as api:
        backup_id = start_backup(api, token(stack.db), config.id).json()["id"]
    stack.wait(backup_id, lambda b: b.state == "in_progress", timeout=60, what="running")
    os.kill(first.process.pid, signal.SIGTERM)
    final = stack.wait(backup_id, timeout=40)
    first.process.wait(timeout=30)
    assert final.state == "completed" and final.attempts == 1, stack.logs()
    assert "handed back" not in first.log_path.read_text()
