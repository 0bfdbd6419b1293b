"""Retention on its own (OQ-40), with a clock the test controls: the pass starts a cleanup for
each agent with an expired backup, and that cleanup expires, forgets and prunes."""

from __future__ import annotations

import random
from datetime import timedelta

import sqlalchemy as sa

from cloudbackup.domain.cleanup_run import execute_cleanup
from cloudbackup.domain.retention import enforce_retention, expired_agents
from cloudbackup.engine import open_vault
from cloudbackup.store.tables import Backup, Cleanup, utcnow
from factories.runs import Recorder, backed_up
from factories.trees import make_tree


def _ended_at(db, backup, when) -> None:
    with db.transaction() as session:
        session.execute(sa.update(Backup).where(Backup.id == backup.id).values(ended_time=when))


def _row(db, model, row_id):
    with db.transaction() as session:
        return session.execute(sa.select(model).where(model.id == row_id)).scalar_one()


def test_a_backup_expires_exactly_retention_days_after_it_ended(db, settings, tmp_path):
    tree = make_tree(tmp_path / "src", files=5)
    agent, _, backup = backed_up(db, settings, tree.root, retention_days=7)
    ended = utcnow() - timedelta(days=30)
    _ended_at(db, backup, ended)
    assert expired_agents(db, ended + timedelta(days=7) - timedelta(seconds=1)) == []
    assert expired_agents(db, ended + timedelta(days=7)) == [(agent.project_id, agent.id)]


def test_retention_zero_keeps_forever_and_disabled_agents_wait(db, settings, tmp_path):
    tree = make_tree(tmp_path / "src", files=5)
    _, _, forever = backed_up(db, settings, tree.root, retention_days=0)
    _ended_at(db, forever, utcnow() - timedelta(days=5000))
    off, _, old = backed_up(db, settings, tree.root, retention_days=1)
    _ended_at(db, old, utcnow() - timedelta(days=10))
    with db.transaction() as session:
        session.execute(sa.text("UPDATE agents SET enabled = false WHERE id = :id"), {"id": off.id})
    recorder = Recorder()
    assert enforce_retention(db, recorder).started == []
    assert recorder.published == []


def test_the_pass_starts_one_cleanup_that_expires_forgets_and_prunes(db, settings, tmp_path):
    tree = make_tree(tmp_path / "src", files=20, size=20_000)
    only_old = tree.root / "only-in-the-old-backup.bin"
    only_old.write_bytes(random.Random(5).randbytes(2 * 1024 * 1024))
    agent, _config, old = backed_up(db, settings, tree.root, retention_days=3)
    only_old.unlink()
    _, _, fresh = backed_up(db, settings, tree.root, agent=agent, retention_days=3)
    now = utcnow()
    _ended_at(db, old, now - timedelta(days=3, hours=1))
    vault = open_vault(settings, agent.vault_id)
    assert sorted(vault.list_snapshots()) == sorted([old.snapshot_id, fresh.snapshot_id])

    recorder = Recorder()
    report = enforce_retention(db, recorder, now=now)
    assert len(report.started) == 1
    cleanup_id = report.started[0]
    assert recorder.published == [("cleanup", cleanup_id, agent.id)]
    # A second pass while that cleanup is not final starts nothing more.
    again = enforce_retention(db, Recorder(), now=now)
    assert again.started == [] and again.busy == 1

    assert execute_cleanup(db, settings, cleanup_id) == "completed"
    cleanup = _row(db, Cleanup, cleanup_id)
    assert cleanup.snapshot_ids == [old.snapshot_id]
    assert cleanup.bytes_after < cleanup.bytes_before  # the old backup's own file is pruned
    assert _row(db, Backup, old.id).restorable is False
    assert _row(db, Backup, fresh.id).restorable is True
    assert vault.list_snapshots() == [fresh.snapshot_id]
    # Nothing is left to expire: the next pass is quiet.
    assert enforce_retention(db, Recorder(), now=now).started == []
