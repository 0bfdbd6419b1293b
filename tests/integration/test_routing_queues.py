"""Routing, limits, pauses and scheduling with real Celery workers and beat on PostgreSQL/Redis.

Each test uses its own queue names, so it never shares messages with other tests' workers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from litestar.testing import TestClient

from cloudbackup.domain import scheduler
from cloudbackup.domain.backups import BackupService
from cloudbackup.domain.queue_admin import QueueChange
from cloudbackup.queue.admin import QueueAdmin
from cloudbackup.queue.names import QueueNames
from cloudbackup.queue.publishing import CeleryDispatcher
from cloudbackup.server import create_app
from cloudbackup.settings import load_settings
from cloudbackup.store.db import Database
from cloudbackup.store.tables import Backup, utcnow
from factories import rows
from factories.api import start_backup, token
from factories.services import REDIS_URL, ROOT, WorkerProcess
from factories.trees import make_tree

pytestmark = pytest.mark.services

FINAL = {"completed", "completed_with_errors", "failed", "stopped", "skipped", "missed"}
RUNNING = {"queued", "preparing", "in_progress"}


@pytest.fixture
def lane(integration_env, tmp_path):
    """A private set of queues (and settings) for one test; its workers are stopped after it."""
    base = f"backups-routing-{uuid.uuid4().hex[:8]}"
    env = {
        **integration_env,
        "CLOUDBACKUP_BACKUP_QUEUE": base,
        "CLOUDBACKUP_WORKER_SYNC_SECONDS": "0.5",
        "CLOUDBACKUP_BACKUP_MAX_BPS": "0",
    }
    started: list[WorkerProcess] = []

    class Lane:
        names = QueueNames(base)

        def __init__(self) -> None:
            self.env = env

        @property
        def settings(self):
            return load_settings(self.env)

        def worker(self, name="w", concurrency=2, argv=None, **extra) -> WorkerProcess:
            env = {**self.env, **extra}
            process = WorkerProcess(env, tmp_path / f"{name}.log", concurrency, name, argv=argv)
            started.append(process.start())
            return process

    yield Lane()
    for process in started:
        process.stop()
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{base}*"))
    if keys:
        client.delete(*keys)


def _config(db, agent, tree):
    return rows.configuration(db, agent, inclusions=[{"type": "folder", "path": f"{tree.root}/"}])


def _states(db, ids) -> dict[str, Backup]:
    with db.transaction() as session:
        found = session.execute(sa.select(Backup).where(Backup.id.in_(list(ids)))).scalars()
        return {b.id: b for b in found}


def _wait_final(db, ids, timeout=60.0) -> dict[str, Backup]:
    deadline = time.monotonic() + timeout
    while True:
        found = _states(db, ids)
        if len(found) == len(ids) and all(b.state in FINAL for b in found.values()):
            return found
        assert time.monotonic() < deadline, {k: v.state for k, v in found.items()}
        time.sleep(0.2)


def _json_lines(path: Path) -> list[dict]:
    lines = []
    for text in path.read_text(errors="replace").splitlines():
        if text.startswith("{"):
            lines.append(json.loads(text))
    return lines


@pytest.mark.slow
def test_an_agent_worker_serves_its_agent_and_the_plain_worker_everyone_else(lane, pg_db, tmp_path):
    tree = make_tree(tmp_path / "src", files=6, with_excluded=False)
    pinned, other = rows.agent(pg_db), rows.agent(pg_db)
    plain = lane.worker("plain")
    host = lane.worker(
        "host",
        concurrency=1,
        argv=[sys.executable, "-m", "cloudbackup.cli", "agent", "--agent-id", pinned.id],
    )
    settings = lane.settings
    dispatcher = CeleryDispatcher.from_settings(settings, database=pg_db)
    app = create_app(settings, database=pg_db, dispatcher=dispatcher)
    secret = token(pg_db)
    with TestClient(app=app) as api:
        mine = start_backup(api, secret, _config(pg_db, pinned, tree).id).json()["id"]
        theirs = start_backup(api, secret, _config(pg_db, other, tree).id).json()["id"]
    # A message for the pinned agent that reached a shared queue is forwarded, not run there.
    stray = BackupService(pg_db).start(
        pinned.project_id, _config(pg_db, pinned, tree).id, "start_requested", None
    )
    dispatcher.publish_to(lane.names.manual, "backup", stray.id, pinned.id)
    done = _wait_final(pg_db, [mine, theirs, stray.id])
    assert {b.state for b in done.values()} == {"completed"}

    def ran(worker: WorkerProcess) -> set[str]:
        return {
            line["backup_id"]
            for line in _json_lines(worker.log_path)
            if line.get("logger") == "cloudbackup.run" and "ended" in line["message"]
        }

    assert ran(host) == {mine, stray.id}
    assert ran(plain) == {theirs}
    # Every line about a run carries its ids (JSON logs from the workers).
    ended = next(line for line in _json_lines(host.log_path) if line.get("backup_id") == mine)
    assert (ended["project_id"], ended["agent_id"]) == (pinned.project_id, pinned.id)
    workers = {w.hostname.split("@")[0]: w for w in QueueAdmin(pg_db, settings).workers()}
    host_worker = workers[f"agent-{pinned.id}"]
    assert host_worker.online and host_worker.agent_id == pinned.id
    assert host_worker.queues == sorted(lane.names.for_agent(pinned.id))
    plain_worker = next(w for name, w in workers.items() if name.startswith("plain"))
    assert sorted(plain_worker.queues) == sorted(lane.names.shared())


def test_a_paused_queue_holds_new_runs_until_it_is_resumed(lane, pg_db, tmp_path):
    tree = make_tree(tmp_path / "src", files=4, with_excluded=False)
    lane.worker("w")
    settings = lane.settings
    admin = QueueAdmin(pg_db, settings)
    admin.update(lane.names.manual, QueueChange(paused=True))
    dispatcher = CeleryDispatcher.from_settings(settings, database=pg_db)
    backup = BackupService(pg_db, dispatcher).start(
        "110011", _config(pg_db, rows.agent(pg_db), tree).id, "start_requested", None
    )
    time.sleep(3)
    assert _states(pg_db, [backup.id])[backup.id].state == "start_requested"
    info = admin.queue(lane.names.manual)
    assert info.paused and info.depth + info.waiting == 1
    admin.update(lane.names.manual, QueueChange(paused=False))
    assert _wait_final(pg_db, [backup.id])[backup.id].state == "completed"


@pytest.mark.slow
def test_per_agent_limit_runs_one_at_a_time_and_loses_nothing(lane, pg_db, tmp_path):
    tree = make_tree(tmp_path / "src", files=4, big_files=1, big_size=3 * 2**20)
    lane.worker(
        "w",
        concurrency=2,
        CLOUDBACKUP_MAX_RUNNING_PER_AGENT="1",
        CLOUDBACKUP_BACKUP_MAX_BPS=str(3 * 2**20),  # about a second per run
    )
    settings = lane.settings
    dispatcher = CeleryDispatcher.from_settings(settings, database=pg_db)
    agent = rows.agent(pg_db)
    service = BackupService(pg_db, dispatcher)
    ids = [
        service.start(agent.project_id, _config(pg_db, agent, tree).id, "start_requested", None).id
        for _ in range(3)
    ]
    most = 0
    deadline = time.monotonic() + 60
    while True:
        states = [b.state for b in _states(pg_db, ids).values()]
        most = max(most, sum(s in RUNNING for s in states))
        if all(s in FINAL for s in states):
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.05)
    assert most == 1
    assert set(states) == {"completed"}


def test_manual_runs_are_served_before_a_flood_of_scheduled_ones(lane, pg_db, tmp_path):
    tree = make_tree(tmp_path / "src", files=2, with_excluded=False)
    settings = lane.settings
    dispatcher = CeleryDispatcher.from_settings(settings, database=pg_db)
    agent = rows.agent(pg_db)
    service = BackupService(pg_db, dispatcher.scheduled())
    flood = [
        service.start(agent.project_id, _config(pg_db, agent, tree).id, "start_scheduled", agent.id)
        for _ in range(8)
    ]
    manual = BackupService(pg_db, dispatcher).start(
        agent.project_id, _config(pg_db, agent, tree).id, "start_requested", None
    )
    lane.worker("w", concurrency=1, CLOUDBACKUP_MAX_RUNNING_PER_AGENT="0")
    done = _wait_final(pg_db, [manual.id, *(b.id for b in flood)])
    first = min(done.values(), key=lambda b: b.started_time)
    assert first.id == manual.id


def test_two_schedulers_on_postgresql_fire_each_occurrence_once(pg_db, integration_settings):
    agent = rows.agent(pg_db)
    due = utcnow() - timedelta(seconds=5)
    schedule = {
        "start": "2020-01-01T00:00:00Z",
        "recurrence": ["RRULE:FREQ=HOURLY;INTERVAL=1"],
        "time_zone": "UTC",
    }
    configs = [
        rows.configuration(pg_db, agent, schedule=schedule, next_scheduled_time=due)
        for _ in range(120)
    ]

    class Count:
        published = 0

        def publish(self, kind, resource_id, *, agent_id=None):
            Count.published += 1
            return True

    reports = []

    def run() -> None:
        db = Database(integration_settings.resolved_database_url)
        try:
            reports.append(scheduler.tick(db, Count(), integration_settings, batch=20))
        finally:
            db.dispose()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [c.id for c in configs]
    with pg_db.transaction() as session:
        fired = session.execute(
            sa.select(sa.func.count()).where(Backup.configuration_id.in_(ids))
        ).scalar_one()
    assert fired == 120
    assert sum(r.fired for r in reports) == 120 == Count.published


@pytest.mark.slow
def test_beat_fires_a_due_schedule_which_a_worker_runs(lane, pg_db, tmp_path):
    tree = make_tree(tmp_path / "src", files=3, with_excluded=False)
    agent = rows.agent(pg_db)
    config = rows.configuration(
        pg_db,
        agent,
        inclusions=[{"type": "folder", "path": f"{tree.root}/"}],
        schedule={
            "start": "2020-01-01T00:00:00Z",
            "recurrence": ["RRULE:FREQ=HOURLY;INTERVAL=1"],
            "time_zone": "UTC",
        },
        next_scheduled_time=utcnow() + timedelta(seconds=2),
    )
    lane.worker("w")
    log = (tmp_path / "beat.log").open("wb")
    beat = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "cloudbackup.workers.app",
            "beat",
            "--schedule",
            str(tmp_path / "celerybeat-schedule"),
        ],
        cwd=ROOT,
        env={**lane.env, "CLOUDBACKUP_SCHEDULE_TICK_SECONDS": "1", "PATH": "/usr/bin:/bin"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 40
        while True:
            with pg_db.transaction() as session:
                found = (
                    session.execute(sa.select(Backup).where(Backup.configuration_id == config.id))
                    .scalars()
                    .all()
                )
            if found and found[0].state in FINAL:
                break
            assert time.monotonic() < deadline, (tmp_path / "beat.log").read_text()[-3000:]
            time.sleep(0.3)
        assert [b.state for b in found] == ["completed"]
        assert found[0].agent_id == agent.id
    finally:
        beat.terminate()
        beat.wait(timeout=20)
