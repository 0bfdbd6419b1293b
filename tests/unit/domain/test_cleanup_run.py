"""Running cleanups in-process on SQLite with the real engine and vault: retention (OQ-40),
forget + prune, verification damage, stops, duplicate deliveries and the sweeper."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from cloudbackup.domain.backup_run import execute_backup
from cloudbackup.domain.backups import BackupService
from cloudbackup.domain.cleanup_run import CleanupRun, claim_cleanup, execute_cleanup
from cloudbackup.domain.cleanups import CLEANUP_RUNS, CleanupService, CleanupUpdate
from cloudbackup.domain.restore_run import execute_restore
from cloudbackup.domain.restores import RestoreRequest, RestoreService
from cloudbackup.domain.roots import RootsPolicy
from cloudbackup.domain.run_states import CleanupState
from cloudbackup.domain.sweeper import sweep_runs
from cloudbackup.engine import open_vault
from cloudbackup.store.tables import Backup, Cleanup, CleanupError, Event, utcnow
from factories import rows
from factories.runs import Recorder, backed_up
from factories.trees import digests, make_tree

PROJECT = "110011"


def _backup_again(db, settings, config) -> Backup:
    started = BackupService(db, Recorder()).start(PROJECT, config.id, "start_requested", None)
    assert execute_backup(db, settings, started.id) == "completed"
    return _backup(db, started.id)


def _backup(db, backup_id) -> Backup:
    with db.transaction() as session:
        return session.execute(sa.select(Backup).where(Backup.id == backup_id)).scalar_one()


def _ended(db, backup: Backup, days_ago: float) -> None:
    with db.transaction() as session:
        session.execute(
            sa.update(Backup)
            .where(Backup.id == backup.id)
            .values(ended_time=utcnow() - timedelta(days=days_ago))
        )


def _cleanup(db, cleanup_id) -> Cleanup:
    with db.transaction() as session:
        return session.execute(sa.select(Cleanup).where(Cleanup.id == cleanup_id)).scalar_one()


def _events(db, cleanup_id) -> list[str]:
    with db.transaction() as session:
        return list(
            session.execute(
                sa.select(Event.event).where(Event.cleanup_id == cleanup_id).order_by(Event.id)
            ).scalars()
        )


@pytest.fixture
def vault_with_history(db, settings, tmp_path: Path):
    """One agent, two configurations: `kept` (retention 0 = forever) and `short` (1 day), each
    with a backup that ended long ago, and `short` also with a fresh one."""
    tree = make_tree(tmp_path / "src", files=30, size=20_000)
    only_old = tree.root / "only-in-the-old-backup.bin"
    only_old.write_bytes(random.Random(3).randbytes(2 * 1024 * 1024))
    agent, short, old = backed_up(db, settings, tree.root, retention_days=1)
    only_old.unlink()
    fresh = _backup_again(db, settings, short)
    _, _kept, ancient = backed_up(db, settings, tree.root, agent=agent, retention_days=0)
    _ended(db, old, days_ago=2)
    _ended(db, ancient, days_ago=5000)
    return tree, agent, old, fresh, ancient


def test_cleanup_expires_backups_past_retention_and_prunes(
    db, settings, vault_with_history, tmp_path
):
    tree, agent, old, fresh, ancient = vault_with_history
    vault = open_vault(settings, agent.vault_id)
    assert sorted(vault.list_snapshots()) == sorted(
        [old.snapshot_id, fresh.snapshot_id, ancient.snapshot_id]
    )
    cleanup = CleanupService(db, Recorder()).start(PROJECT, agent.id, "start_requested", None)

    assert execute_cleanup(db, settings, cleanup.id) == "completed"
    assert execute_cleanup(db, settings, cleanup.id) == "noop"  # a second delivery
    row = _cleanup(db, cleanup.id)
    assert row.snapshot_ids == [old.snapshot_id]
    # The old backup's own 2 MiB went with it; the data the others share stayed.
    assert row.bytes_before - row.bytes_after > 1024 * 1024 and row.bytes_after > 0
    assert row.started_time is not None and row.ended_time is not None
    assert row.errors_count == 0 and row.errors_diagnostics is None and row.active_lock is None
    assert not _backup(db, old.id).restorable  # OQ-40: expired
    assert _backup(db, fresh.id).restorable and _backup(db, ancient.id).restorable  # 0 = forever
    assert old.snapshot_id not in open_vault(settings, agent.vault_id).list_snapshots()
    assert _events(db, cleanup.id) == [
        "cleanup_start_request",
        "cleanup_queued",
        "cleanup_in_progress",
        "cleanup_completed",
    ]
    # What is left still restores byte-identical.
    out = tmp_path / "out"
    restore = RestoreService(db, Recorder(), RootsPolicy.from_settings(settings)).start(
        PROJECT,
        RestoreRequest(fresh.id, agent.id, str(out), False, None, (), ()),
    )
    assert execute_restore(db, settings, restore.id) == "completed"
    assert digests(out / str(tree.root).lstrip("/")) == {
        k: v for k, v in digests(tree.root).items()
    }
    # A second cleanup finds nothing new to expire.
    again = CleanupService(db, Recorder()).start(PROJECT, agent.id, "start_requested", None)
    assert execute_cleanup(db, settings, again.id) == "completed"
    assert _cleanup(db, again.id).snapshot_ids == []


def test_a_backup_being_restored_is_left_for_the_next_cleanup(
    db, settings, vault_with_history, tmp_path
):
    _, agent, old, _, _ = vault_with_history
    RestoreService(db, Recorder(), RootsPolicy.from_settings(settings)).start(
        PROJECT, RestoreRequest(old.id, agent.id, str(tmp_path / "o"), False, None, (), ())
    )
    cleanup = CleanupService(db, Recorder()).start(PROJECT, agent.id, "start_requested", None)
    assert execute_cleanup(db, settings, cleanup.id) == "completed"
    assert _cleanup(db, cleanup.id).snapshot_ids == []
    assert _backup(db, old.id).restorable


def test_damaged_data_ends_completed_with_errors_naming_files(db, settings, tmp_path):
    tree = make_tree(tmp_path / "src", files=6, size=50_000, with_excluded=False)
    agent, _, backup = backed_up(db, settings, tree.root)
    packs = sorted((settings.resolved_vault_path / agent.vault_id / "packs").rglob("*"))
    pack = next(p for p in packs if p.is_file())
    data = bytearray(pack.read_bytes())
    data[len(data) // 3] ^= 0xFF  # one flipped byte inside the chunk data
    pack.write_bytes(bytes(data))
    cleanup = CleanupService(db, Recorder()).start(PROJECT, agent.id, "start_requested", None)

    assert execute_cleanup(db, settings, cleanup.id) == "completed_with_errors"
    row = _cleanup(db, cleanup.id)
    assert row.errors_count >= 1 and row.errors_reason == "vault_validation_failed"
    assert row.errors_diagnostics is None and row.snapshot_ids == [backup.snapshot_id]
    with db.transaction() as session:
        errors = list(session.execute(sa.select(CleanupError)).scalars())
    assert errors and {e.type for e in errors} == {"file_missing_blocks"}
    # The flipped byte hits file data or the chunk holding the snapshot's own file list.
    named = [e.path for e in errors]
    assert all(p.startswith(str(tree.root)) or p == "(the snapshot's list of files)" for p in named)


def test_stop_requested_while_queued_ends_stopped(db, settings):
    agent = rows.agent(db)
    cleanup = CleanupService(db, Recorder()).start(PROJECT, agent.id, "start_requested", None)
    claim = claim_cleanup(db, settings, cleanup.id)
    assert claim is not None
    CleanupService(db).update(
        PROJECT, cleanup.id, CleanupUpdate(state=CleanupState.STOP_REQUESTED), None
    )
    assert _cleanup(db, cleanup.id).state == "stop_requested"
    assert execute_cleanup(db, settings, cleanup.id) == "busy"  # its owner is alive
    assert CleanupRun(db, settings, claim).run() == "stopped"
    row = _cleanup(db, cleanup.id)
    assert row.state == "stopped" and row.active_lock is None
    assert _events(db, cleanup.id)[-2:] == ["cleanup_stop_request", "cleanup_stopped"]


def test_scheduled_cleanup_of_an_empty_vault_completes(db, settings):
    agent = rows.agent(db)
    cleanup = CleanupService(db, Recorder()).start(PROJECT, agent.id, "start_scheduled", agent.id)
    assert execute_cleanup(db, settings, cleanup.id) == "completed"
    assert _cleanup(db, cleanup.id).snapshot_ids == []


def test_a_cleanup_whose_worker_died_is_redriven_then_failed(db, settings):
    agent = rows.agent(db)
    cleanup = CleanupService(db, Recorder()).start(PROJECT, agent.id, "start_requested", None)
    stale = utcnow() - timedelta(seconds=settings.heartbeat_timeout_seconds + 5)
    for attempt in range(1, settings.max_attempts + 1):
        claim = claim_cleanup(db, settings, cleanup.id)
        assert claim is not None and claim.attempt == attempt
        with db.transaction() as session:
            session.execute(
                sa.update(Cleanup).where(Cleanup.id == cleanup.id).values(heartbeat_at=stale)
            )
    assert claim_cleanup(db, settings, cleanup.id) is None
    row = _cleanup(db, cleanup.id)
    assert row.state == "failed" and row.errors_reason == "cleanup_failed"
    assert row.active_lock is None


def test_sweeper_republishes_waiting_and_stale_cleanups(db, settings):
    waiting_agent, running_agent = rows.agent(db), rows.agent(db)
    service = CleanupService(db, Recorder())
    waiting = service.start(PROJECT, waiting_agent.id, "start_requested", None)
    running = service.start(PROJECT, running_agent.id, "start_requested", None)
    assert claim_cleanup(db, settings, running.id) is not None
    recorder = Recorder()
    later = utcnow() + timedelta(seconds=settings.sweep_after_seconds + 1)
    assert sweep_runs(CLEANUP_RUNS, db, recorder, settings, now=later).republished == 1
    assert recorder.published == [("cleanup", waiting.id, waiting_agent.id)]
    much_later = utcnow() + timedelta(seconds=settings.heartbeat_timeout_seconds + 5)
    assert sweep_runs(CLEANUP_RUNS, db, recorder, settings, now=much_later).redriven == 1


def test_a_snapshot_a_restorable_backup_still_names_is_never_forgotten(db, settings, tmp_path):
    """Two rows naming one snapshot come only from a forged report; the one kept forever
    keeps the data although the other expired."""
    tree = make_tree(tmp_path / "src", files=3, size=20_000, with_excluded=False)
    agent, _, expiring = backed_up(db, settings, tree.root, retention_days=1)
    forever = rows.configuration(db, agent, retention_days=0)
    twin = rows.backup(
        db, forever.id, snapshot_id=expiring.snapshot_id, restorable=True, ended_time=utcnow()
    )
    _ended(db, expiring, days_ago=3)
    cleanup = CleanupService(db, Recorder()).start(
        agent.project_id, agent.id, "start_requested", None
    )
    assert execute_cleanup(db, settings, cleanup.id) in ("completed", "completed_with_errors")
    assert not _backup(db, expiring.id).restorable
    assert _backup(db, twin.id).restorable
    assert expiring.snapshot_id in open_vault(settings, agent.vault_id).list_snapshots()


def test_a_snapshot_no_backup_names_is_collected_once_it_is_old(
    db, settings, tmp_path, monkeypatch
):
    """A run that wrote its snapshot and died before recording it leaves nothing for good."""
    from cloudbackup.domain import cleanup_run
    from cloudbackup.engine import run_backup

    tree = make_tree(tmp_path / "src", files=3, size=20_000, with_excluded=False)
    agent, _, kept = backed_up(db, settings, tree.root, retention_days=0)
    vault = open_vault(settings, agent.vault_id)
    orphan = run_backup(
        vault,
        [{"type": "folder", "path": f"{tree.root}/"}],
        [],
        on_progress=lambda _: None,
        should_stop=lambda: False,
    ).snapshot_id
    start = CleanupService(db, Recorder()).start
    young = start(agent.project_id, agent.id, "start_requested", None)
    assert execute_cleanup(db, settings, young.id) == "completed"
    assert orphan in vault.list_snapshots()  # too young: its run may be recording it now

    monkeypatch.setattr(cleanup_run, "ORPHAN_AFTER", timedelta(0))
    old = start(agent.project_id, agent.id, "start_requested", None)
    assert execute_cleanup(db, settings, old.id) == "completed"
    assert _cleanup(db, old.id).snapshot_ids == [orphan]
    assert vault.list_snapshots() == [kept.snapshot_id]
