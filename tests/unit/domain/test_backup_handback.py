"""A worker that shuts down hands its running backup back; the next delivery takes it over at
once; the sweeper re-publishes a handed-back run whose message was lost; worker writes wait for
a database that is briefly away."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import msgspec
import pytest
import sqlalchemy as sa

from cloudbackup.domain import run_protocol
from cloudbackup.domain.backup_run import execute_backup
from cloudbackup.domain.backups import BackupService
from cloudbackup.domain.errors import Unavailable
from cloudbackup.domain.run_protocol import request_hand_back, retrying
from cloudbackup.domain.sweeper import sweep
from cloudbackup.store.tables import Backup, Event, utcnow
from factories import rows
from factories.trees import make_tree


class Recorder:
    def __init__(self) -> None:
        self.published: list[str] = []

    def publish(self, kind: str, resource_id: str, *, agent_id: str | None = None) -> bool:
        self.published.append(resource_id)
        return True


@pytest.fixture(autouse=True)
def fresh_process_flags():
    run_protocol._hand_back.clear()
    yield
    run_protocol._hand_back.clear()


def _start(db, root):
    agent = rows.agent(db)
    config = rows.configuration(db, agent, inclusions=[{"type": "folder", "path": f"{root}/"}])
    return BackupService(db, Recorder()).start(agent.project_id, config.id, "start_requested", None)


def _row(db, backup_id) -> Backup:
    with db.transaction() as session:
        return session.execute(sa.select(Backup).where(Backup.id == backup_id)).scalar_one()


def _events(db, backup_id) -> list[str]:
    with db.transaction() as session:
        return list(
            session.execute(
                sa.select(Event.event)
                .where(Event.backup_id == backup_id, Event.event != "backup_progress")
                .order_by(Event.id)
            ).scalars()
        )


def test_a_shutdown_hands_the_run_back_and_the_next_delivery_takes_it_over_at_once(
    db, settings, tmp_path
):
    tree = make_tree(tmp_path / "src", files=4, big_files=2, big_size=2 * 1024 * 1024)
    slow = msgspec.structs.replace(settings, backup_max_bps=1024 * 1024, progress_interval=0.05)
    backup = _start(db, tree.root)
    outcome: list[str] = []
    runner = threading.Thread(target=lambda: outcome.append(execute_backup(db, slow, backup.id)))
    runner.start()
    deadline = time.monotonic() + 30
    while _row(db, backup.id).state != "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert request_hand_back() is True  # a run was going on in this process
    runner.join(30)

    assert outcome == ["handed_back"]
    left = _row(db, backup.id)
    assert left.state == "in_progress" and left.heartbeat_at is None and left.attempts == 1
    assert execute_backup(db, settings, backup.id) == "handed_back"  # still shutting down

    run_protocol._hand_back.clear()  # another worker (process)
    assert execute_backup(db, settings, backup.id) == "completed"  # no wait for a stale heartbeat
    done = _row(db, backup.id)
    assert done.attempts == 1  # a deliberate shutdown does not use up an attempt
    assert _events(db, backup.id).count("backup_completed") == 1


def test_a_worker_shutting_down_claims_nothing(db, settings, tmp_path, monkeypatch):
    backup = _start(db, make_tree(tmp_path / "src", files=2).root)
    assert request_hand_back() is False  # nothing was running
    assert execute_backup(db, settings, backup.id) == "handed_back"
    assert _row(db, backup.id).state == "start_requested"
    # Still alive a minute later: that signal was not a shutdown; the process works again.
    monkeypatch.setattr(run_protocol, "HAND_BACK_HOLD_SECONDS", 0.0)
    assert execute_backup(db, settings, backup.id) == "completed"


def test_the_sweeper_republishes_a_handed_back_run_whose_message_was_lost(db, settings, tmp_path):
    backup = _start(db, make_tree(tmp_path / "src", files=2).root)
    with db.transaction() as session:
        session.execute(
            sa.update(Backup)
            .where(Backup.id == backup.id)
            .values(state="in_progress", attempts=1, heartbeat_at=None, updated_at=utcnow())
        )
    recorder = Recorder()
    assert sweep(db, recorder, settings).handed_back == 0  # requeued by its worker: wait first
    later = utcnow() + timedelta(seconds=settings.sweep_after_seconds + 1)
    report = sweep(db, recorder, settings, now=later)
    assert report.handed_back == 1 and backup.id in recorder.published
    assert execute_backup(db, settings, backup.id) == "completed"


def test_worker_writes_wait_for_the_database_then_give_up(settings):
    patient = msgspec.structs.replace(settings, database_retry_seconds=2.0)
    calls = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise Unavailable("The database is unreachable; retry in a few seconds.")
        return "written"

    assert retrying(patient, "testing", flaky) == "written"
    assert len(calls) == 3

    def down() -> str:
        raise Unavailable("The database is unreachable; retry in a few seconds.")

    began = time.monotonic()
    with pytest.raises(Unavailable):
        retrying(patient, "testing", down)
    assert 1.0 < time.monotonic() - began < 4.0


def test_the_celery_configuration_is_at_least_once_with_a_soft_shutdown(settings):
    from cloudbackup.queue.celery_app import make_celery

    conf = make_celery(settings).conf
    assert conf.task_acks_late is True  # a task is acknowledged only after it ran
    assert conf.task_reject_on_worker_lost is True  # a killed worker's task is delivered again
    assert conf.worker_prefetch_multiplier == 1  # a worker holds no task it does not run
    # Redis re-delivers an unacknowledged task after the visibility timeout: above the longest
    # backup, so a healthy run is never delivered twice.
    timeout = conf.broker_transport_options["visibility_timeout"]
    assert timeout > settings.max_backup_seconds
    assert conf.task_soft_time_limit == settings.max_backup_seconds < conf.task_time_limit
    assert conf.worker_soft_shutdown_timeout == settings.worker_soft_shutdown_seconds > 0
