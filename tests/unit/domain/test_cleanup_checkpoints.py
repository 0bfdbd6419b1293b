"""Cleanups and checkpoints: the work of the last stopped run of a configuration is kept, a
checkpoint nothing will resume from is collected with the data only it listed, and nothing a
snapshot references is ever removed."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from cloudbackup.domain import cleanup_run
from cloudbackup.domain.backup_run import execute_backup
from cloudbackup.domain.backups import BackupService
from cloudbackup.domain.cleanup_run import execute_cleanup
from cloudbackup.domain.cleanups import CleanupService
from cloudbackup.engine import (
    BackupProgress,
    BackupStopped,
    Vault,
    open_vault,
    restore_snapshot,
    run_backup,
)
from cloudbackup.engine.checkpoints import list_checkpoints, load_resume
from cloudbackup.engine.selection import Selection
from cloudbackup.store.tables import Backup, Configuration, utcnow
from factories.runs import Recorder, backed_up
from factories.trees import digests, make_tree

MIB = 1024 * 1024


def _stopped_run(db, config, vault: Vault, inclusions, total: int) -> tuple[str, int]:
    """A backup of ``config`` stopped at half its bytes, as a worker leaves it: a checkpoint
    under its id and a `stopped` row that ended two hours ago; its id and the bytes it stored."""
    started = BackupService(db, Recorder()).start(
        config.project_id, config.id, "start_requested", None
    )
    reports: list[BackupProgress] = []
    with pytest.raises(BackupStopped):
        run_backup(
            vault,
            inclusions,
            [],
            on_progress=reports.append,
            should_stop=lambda: bool(reports) and reports[-1].bytes_completed >= total / 2,
            checkpoint=started.id,
            checkpoint_seconds=0.0,
        )
    with db.transaction() as session:
        session.execute(
            sa.update(Backup)
            .where(Backup.id == started.id)
            .values(
                state="stopped", ended_time=utcnow() - timedelta(hours=2), active_manual_lock=None
            )
        )
    return started.id, reports[-1].bytes_backed_up


def _cleanup(db, settings, agent) -> None:
    cleanup = CleanupService(db, Recorder()).start(
        agent.project_id, agent.id, "start_requested", None
    )
    assert execute_cleanup(db, settings, cleanup.id) == "completed"


def _resumable(vault: Vault, inclusions) -> bool:
    """Whether the checkpointed files are there to reuse: listed, and every chunk indexed."""
    resume = load_resume(vault, "probe", Selection(inclusions, []).inclusions)
    index = vault.load_index()
    return bool(resume.files) and all(c in index for e in resume.files.values() for c in e.chunks)


def test_a_stopped_runs_checkpoint_is_kept_until_a_later_run_supersedes_it(
    db, settings, tmp_path: Path, monkeypatch
):
    monkeypatch.setattr(cleanup_run, "ORPHAN_AFTER", timedelta(0))
    small = make_tree(tmp_path / "src", files=3, size=20_000, with_excluded=False)
    agent, config, first = backed_up(db, settings, small.root, retention_days=0)
    for n in range(8):
        (small.root / f"big{n}.bin").write_bytes(os.urandom(2 * MIB))
    vault = open_vault(settings, agent.vault_id)
    inclusions = [{"type": "folder", "path": f"{small.root}/"}]
    stopped, stored = _stopped_run(db, config, vault, inclusions, 16 * MIB)
    assert stored > 0

    # The last run of its configuration: what it stored is kept for the next run.
    _cleanup(db, settings, agent)
    assert stopped in list_checkpoints(vault)
    assert _resumable(vault, inclusions)

    # A later run of other inclusions completes: nothing will resume from the stopped run now.
    sub = small.root / "sub"
    sub.mkdir()
    (sub / "x.txt").write_bytes(b"x")
    with db.transaction() as session:
        session.execute(
            sa.update(Configuration)
            .where(Configuration.id == config.id)
            .values(inclusions=[{"type": "folder", "path": f"{sub}/"}])
        )
    started = BackupService(db, Recorder()).start(
        agent.project_id, config.id, "start_requested", None
    )
    assert execute_backup(db, settings, started.id) == "completed"
    before = vault.size()
    _cleanup(db, settings, agent)

    assert list_checkpoints(vault) == {}
    assert vault.size() <= before - stored  # the stopped run's data went with its checkpoint
    # The snapshots' data did not.
    restore_snapshot(vault, first.snapshot_id, tmp_path / "out")
    restored = tmp_path / "out" / str(small.root).lstrip("/")
    now = digests(small.root)
    assert digests(restored) == {k: v for k, v in now.items() if k[:3] not in ("big", "sub")}


def test_a_checkpoint_no_backup_names_is_collected_once_it_is_old(
    db, settings, tmp_path: Path, monkeypatch
):
    small = make_tree(tmp_path / "src", files=3, size=20_000, with_excluded=False)
    agent, _config, first = backed_up(db, settings, small.root, retention_days=0)
    (tmp_path / "other").mkdir()
    for n in range(4):
        (tmp_path / "other" / f"big{n}.bin").write_bytes(os.urandom(2 * MIB))
    vault = open_vault(settings, agent.vault_id)
    reports: list[BackupProgress] = []
    with pytest.raises(BackupStopped):
        run_backup(
            vault,
            [{"type": "folder", "path": f"{tmp_path / 'other'}/"}],
            [],
            on_progress=reports.append,
            should_stop=lambda: bool(reports) and reports[-1].bytes_completed >= 5 * MIB,
            checkpoint="no-such-backup",
            checkpoint_seconds=0.0,
        )
    _cleanup(db, settings, agent)
    assert "no-such-backup" in list_checkpoints(vault)  # too young: its run may be starting

    monkeypatch.setattr(cleanup_run, "ORPHAN_AFTER", timedelta(0))
    before = vault.size()
    _cleanup(db, settings, agent)
    assert list_checkpoints(vault) == {}
    assert 0 < reports[-1].bytes_backed_up <= before - vault.size()
    assert vault.list_snapshots() == [first.snapshot_id]
    restore_snapshot(vault, first.snapshot_id, tmp_path / "out")
    assert digests(tmp_path / "out" / str(small.root).lstrip("/")) == digests(small.root)
