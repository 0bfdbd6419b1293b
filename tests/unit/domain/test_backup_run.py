"""Claiming and running a backup in-process on SQLite: duplicates, re-drives, skips, stops."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from cloudbackup.domain.backup_run import BackupRun, claim_backup, execute_backup
from cloudbackup.domain.backups import BackupService
from cloudbackup.domain.run_states import BackupState
from cloudbackup.store.tables import Backup, Event, utcnow
from factories import rows
from factories.trees import make_tree


class Recorder:
    """The dispatcher of these tests: keeps what would have been published."""

    def __init__(self) -> None:
        self.published: list[str] = []

    def publish(self, kind: str, resource_id: str, *, agent_id: str | None = None) -> bool:
        self.published.append(resource_id)
        return True


@pytest.fixture
def tree(tmp_path: Path):
    return make_tree(tmp_path / "src", files=12, size=3000)


def _start(db, tree, state: str = "start_requested", **config):
    agent = rows.agent(db)
    configuration = rows.configuration(
        db,
        agent,
        inclusions=[{"type": "folder", "path": f"{tree.root}/"}],
        exclusions=[{"type": "folder", "path": f"{tree.root}/cache/"}],
        **config,
    )
    header = agent.id if state == "start_scheduled" else None
    return BackupService(db, Recorder()).start(agent.project_id, configuration.id, state, header)


def _row(db, backup_id) -> Backup:
    with db.transaction() as session:
        return session.execute(sa.select(Backup).where(Backup.id == backup_id)).scalar_one()


def _events(db, backup_id) -> list[str]:
    with db.transaction() as session:
        return list(
            session.execute(
                sa.select(Event.event).where(Event.backup_id == backup_id).order_by(Event.id)
            ).scalars()
        )


def test_run_completes_and_a_second_delivery_is_a_noop(db, settings, tree):
    backup = _start(db, tree)
    assert execute_backup(db, settings, backup.id) == "completed"
    assert execute_backup(db, settings, backup.id) == "noop"
    row = _row(db, backup.id)
    assert row.state == "completed" and row.restorable and row.attempts == 1
    assert (row.files_searched, row.bytes_searched) == (tree.files, tree.bytes)
    assert [e for e in _events(db, backup.id) if e != "backup_progress"] == [
        "backup_start_request",
        "backup_queued",
        "backup_preparing",
        "backup_in_progress",
        "backup_completed",
    ]


def test_claimed_run_with_fresh_heartbeat_is_not_taken_over(db, settings, tree):
    backup = _start(db, tree)
    assert claim_backup(db, settings, backup.id) is not None
    assert execute_backup(db, settings, backup.id) == "busy"  # duplicate delivery while it runs


def test_run_whose_worker_died_is_redriven_then_failed_after_max_attempts(db, settings, tree):
    backup = _start(db, tree)
    stale = utcnow() - timedelta(seconds=settings.heartbeat_timeout_seconds + 5)
    for attempt in range(1, settings.max_attempts + 1):
        claim = claim_backup(db, settings, backup.id)
        assert claim is not None and claim.attempt == attempt
        with db.transaction() as session:  # the worker "dies": its heartbeat goes stale
            session.execute(
                sa.update(Backup).where(Backup.id == backup.id).values(heartbeat_at=stale)
            )
    assert claim_backup(db, settings, backup.id) is None
    row = _row(db, backup.id)
    assert row.state == "failed"
    assert row.errors_reason == "backup_failed"
    assert "stopped responding" in row.errors_diagnostics


def test_redriven_run_completes_and_the_old_owner_cannot_write(db, settings, tree):
    backup = _start(db, tree)
    first = claim_backup(db, settings, backup.id)
    assert first is not None
    stale = utcnow() - timedelta(seconds=settings.heartbeat_timeout_seconds + 5)
    with db.transaction() as session:
        session.execute(sa.update(Backup).where(Backup.id == backup.id).values(heartbeat_at=stale))
    assert execute_backup(db, settings, backup.id) == "completed"
    assert _row(db, backup.id).attempts == 2


def test_scheduled_run_while_another_is_active_is_skipped(db, settings, tree):
    manual = _start(db, tree)
    with db.transaction() as session:
        config_id = session.execute(
            sa.select(Backup.configuration_id).where(Backup.id == manual.id)
        ).scalar_one()
        agent_id = session.execute(
            sa.select(Backup.agent_id).where(Backup.id == manual.id)
        ).scalar_one()
    scheduled = BackupService(db, Recorder()).start(
        manual.project_id, config_id, "start_scheduled", agent_id
    )
    assert execute_backup(db, settings, scheduled.id) == "noop"
    assert _row(db, scheduled.id).state == "skipped"
    assert _events(db, scheduled.id)[-1] == "backup_skipped"
    assert execute_backup(db, settings, manual.id) == "completed"


def test_stop_requested_while_queued_ends_stopped(db, settings, tree):
    backup = _start(db, tree)
    claim = claim_backup(db, settings, backup.id)
    assert claim is not None
    from cloudbackup.domain.backups import BackupUpdate

    BackupService(db).update(
        backup.project_id, backup.id, BackupUpdate(state=BackupState.STOP_REQUESTED), None
    )
    assert BackupRun(db, settings, claim).run() == "stopped"
    row = _row(db, backup.id)
    assert row.state == "stopped" and not row.restorable and row.active_manual_lock is None


def test_engine_failure_ends_failed_with_reason(db, settings, tree):
    backup = _start(db, tree)
    # A regular file where the vault folder must go: the run cannot store anything.
    settings.resolved_vault_path.parent.mkdir(parents=True, exist_ok=True)
    settings.resolved_vault_path.write_bytes(b"not a folder")
    assert execute_backup(db, settings, backup.id) == "failed"
    row = _row(db, backup.id)
    assert row.state == "failed" and not row.restorable
    assert row.errors_reason == "backup_failed"
    assert "Error" in row.errors_diagnostics and "reference" in row.errors_diagnostics
    assert str(settings.resolved_vault_path) not in row.errors_diagnostics  # the log has it
    assert _events(db, backup.id)[-1] == "backup_failed"


def test_live_counters_include_errors_and_the_storing_rate(db, settings, tree):
    """B3 shows errors.count and bandwidth_avg_bps while the backup runs, not only at its end;
    the rate counts the time spent storing, not the scan before it."""
    from cloudbackup.engine import BackupProgress

    backup = _start(db, tree)
    claim = claim_backup(db, settings, backup.id)
    assert claim is not None
    run = BackupRun(db, settings, claim)
    run.enter(BackupState.IN_PROGRESS)
    time.sleep(0.2)
    run.progress = BackupProgress(
        files_searched=10,
        bytes_searched=50_000_000,
        files_backed_up=4,
        bytes_backed_up=20_000_000,
        bytes_completed=25_000_000,
        total_bytes=50_000_000,
        errors_count=2,
    )
    run.flush()
    row = _row(db, backup.id)
    assert row.state == "in_progress" and row.errors_count == 2
    assert row.bytes_backed_up == 20_000_000
    assert 0 < row.bandwidth_avg_bps <= 20_000_000 / 0.2
