"""An open anomaly holds its configuration's older snapshots: retention starts no cleanup for
them and a cleanup forgets none of them; dismissing the anomaly releases them."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from cloudbackup.domain.anomalies import AnomalyService
from cloudbackup.domain.backup_run import execute_backup
from cloudbackup.domain.backups import BackupService
from cloudbackup.domain.cleanup_run import execute_cleanup
from cloudbackup.domain.cleanups import CleanupService
from cloudbackup.domain.retention import enforce_retention
from cloudbackup.engine import open_vault
from cloudbackup.store.tables import Anomaly, Backup, Cleanup, utcnow
from factories.runs import Recorder, backed_up
from factories.trees import make_text_tree, rewrite_random


def _row(db, model, **equal):
    with db.transaction() as session:
        return session.execute(sa.select(model).filter_by(**equal)).scalar_one()


def _attacked(db, settings, tmp_path):
    """A configuration with 3-day retention: a backup that ended 4 days ago, then a mass
    rewrite's backup (an open anomaly)."""
    paths = make_text_tree(tmp_path / "src", files=50)
    agent, config, old = backed_up(db, settings, tmp_path / "src", retention_days=3)
    rewrite_random(paths[:45])
    started = BackupService(db, Recorder()).start(
        config.project_id, config.id, "start_requested", None
    )
    assert execute_backup(db, settings, started.id) == "completed"
    with db.transaction() as session:
        session.execute(
            sa.update(Backup)
            .where(Backup.id == old.id)
            .values(ended_time=utcnow() - timedelta(days=4))
        )
    anomaly = _row(db, Anomaly, backup_id=started.id)
    assert anomaly.state == "open"
    return agent, old, anomaly


def test_retention_keeps_the_earlier_snapshot_while_open_and_forgets_it_after(
    db, settings, tmp_path
):
    agent, old, anomaly = _attacked(db, settings, tmp_path)
    vault = open_vault(settings, agent.vault_id)

    # While open: the retention pass finds nothing due, and a cleanup run anyway forgets nothing.
    assert enforce_retention(db, Recorder()).started == []
    cleanup = CleanupService(db, Recorder()).start(
        agent.project_id, agent.id, "start_requested", None
    )
    assert execute_cleanup(db, settings, cleanup.id) == "completed"
    assert _row(db, Cleanup, id=cleanup.id).snapshot_ids == []
    assert old.snapshot_id in vault.list_snapshots()
    assert _row(db, Backup, id=old.id).restorable is True

    # Dismissed: the next pass starts a cleanup that expires and forgets it.
    AnomalyService(db).dismiss(agent.project_id, anomaly.id, "admin-token-id", None)
    report = enforce_retention(db, Recorder())
    assert len(report.started) == 1
    assert execute_cleanup(db, settings, report.started[0]) == "completed"
    assert _row(db, Cleanup, id=report.started[0]).snapshot_ids == [old.snapshot_id]
    assert old.snapshot_id not in vault.list_snapshots()
    assert _row(db, Backup, id=old.id).restorable is False
    assert _row(db, Anomaly, id=anomaly.id).state == "dismissed"


def test_the_hold_covers_only_the_configuration_of_the_anomaly(db, settings, tmp_path):
    agent, _old, _ = _attacked(db, settings, tmp_path)
    make_text_tree(tmp_path / "other", files=5)
    _, _, elsewhere = backed_up(db, settings, tmp_path / "other", agent=agent, retention_days=1)
    with db.transaction() as session:
        session.execute(
            sa.update(Backup)
            .where(Backup.id == elsewhere.id)
            .values(ended_time=utcnow() - timedelta(days=2))
        )
    cleanup = CleanupService(db, Recorder()).start(
        agent.project_id, agent.id, "start_requested", None
    )
    assert execute_cleanup(db, settings, cleanup.id) == "completed"
    assert _row(db, Cleanup, id=cleanup.id).snapshot_ids == [elsewhere.snapshot_id]
