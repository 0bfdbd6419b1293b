"""Restore drills run in-process on SQLite with the real engine and a real vault: a good vault
passes with its counts, a damaged pack fails naming the files, the scratch folder goes, the
state machine is data on the one run model, and the sweeper covers drills."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from cloudbackup.domain.drill_run import DrillRun, claim_drill, execute_drill, scratch_folder
from cloudbackup.domain.drills import DRILL_RUNS, DrillService, DrillUpdate
from cloudbackup.domain.errors import Conflict, NotFound
from cloudbackup.domain.run_states import DRILL_MACHINE, DrillState
from cloudbackup.domain.sweeper import sweep
from cloudbackup.domain.vaults import open_service_vault
from cloudbackup.engine import Vault
from cloudbackup.engine.packs import pack_name
from cloudbackup.store.tables import Backup, Drill, DrillError, Event, utcnow
from factories.runs import Recorder, backed_up
from factories.trees import make_tree

D = DrillState


@pytest.fixture
def source(db, settings, tmp_path: Path):
    tree = make_tree(tmp_path / "src", files=30, size=60_000, big_files=1, big_size=3_000_000)
    agent, _, backup = backed_up(db, settings, tree.root, exclude=["cache"])
    return tree, agent, backup


def _row(db, drill_id: str) -> Drill:
    with db.read() as session:
        return session.execute(sa.select(Drill).where(Drill.id == drill_id)).scalar_one()


def _errors(db, drill_id: str) -> list[DrillError]:
    with db.read() as session:
        query = sa.select(DrillError).where(DrillError.drill_id == drill_id)
        return list(session.execute(query.order_by(DrillError.index)).scalars())


def _events(db, drill_id: str) -> list[str]:
    with db.read() as session:
        query = sa.select(Event.event).where(Event.drill_id == drill_id).order_by(Event.id)
        return list(session.execute(query).scalars())


def _start(db, backup: Backup, recorder: Recorder | None = None) -> Drill:
    return DrillService(db, recorder or Recorder()).start(backup.project_id, backup.id)


def _damage_file(vault: Vault, vault_root: Path, snapshot_id: int, name: str) -> str:
    """Flip one byte inside the stored chunk of the snapshot file ending in ``name``."""
    entry = next(e for e in vault.iter_entries(snapshot_id) if e.path.endswith(name.encode()))
    location = vault.locate(entry.chunks[0])
    assert location is not None
    pack = vault_root / pack_name(location.pack)
    data = bytearray(pack.read_bytes())
    data[location.offset + location.length // 2] ^= 0xFF
    pack.write_bytes(bytes(data))
    return entry.path.decode()


def test_the_drill_machine_is_data_on_the_one_run_model():
    assert DRILL_MACHINE.starts == {D.START_REQUESTED}
    assert DRILL_MACHINE.running == {D.QUEUED, D.IN_PROGRESS}
    assert DRILL_MACHINE.final == {D.PASSED, D.FAILED, D.STOPPED}
    assert DRILL_MACHINE.can_move("in_progress", "passed")
    assert not DRILL_MACHINE.can_move("queued", "passed")  # nothing checked yet
    assert not DRILL_MACHINE.can_move("passed", "failed")
    assert DRILL_MACHINE.can_move("start_requested", "stop_requested")
    # A user may only ask for a stop; no agent reports on a drill.
    assert DRILL_MACHINE.user_settable == {D.STOP_REQUESTED}
    assert DRILL_MACHINE.agent_settable == frozenset()
    events = DRILL_MACHINE.events
    assert events[D.START_REQUESTED] == "drill_start_request"
    assert (events[D.PASSED], events[D.FAILED]) == ("drill_passed", "drill_failed")
    assert DRILL_RUNS.name == "drill"


def test_a_drill_of_a_good_vault_passes_with_its_counts(db, settings, source):
    tree, _, backup = source
    recorder = Recorder()
    drill = _start(db, backup, recorder)
    assert recorder.published == [("drill", drill.id, backup.agent_id)]
    assert _row(db, drill.id).state == "start_requested"

    assert execute_drill(db, settings, drill.id) == "passed"

    row = _row(db, drill.id)
    assert row.state == "passed" and row.mismatches == 0 and row.errors_count == 0
    assert (row.files_checked, row.bytes_checked) == (tree.files, tree.bytes)
    assert row.duration_seconds is not None and row.duration_seconds > 0
    assert row.bytes_per_second == pytest.approx(tree.bytes / row.duration_seconds, rel=0.05)
    assert row.started_time is not None and row.ended_time is not None
    assert [e for e in _events(db, drill.id) if e != "drill_progress"] == [
        "drill_start_request",
        "drill_queued",
        "drill_in_progress",
        "drill_passed",
    ]
    assert not scratch_folder(settings, drill.id).exists()


def test_a_damaged_pack_fails_the_drill_naming_the_files(db, settings, source):
    _, agent, backup = source
    vault = open_service_vault(db, settings, backup.vault_id)
    damaged = _damage_file(
        vault, settings.resolved_vault_path / agent.vault_id, backup.snapshot_id, "/big0.bin"
    )
    drill = _start(db, backup)

    assert execute_drill(db, settings, drill.id) == "failed"

    row = _row(db, drill.id)
    assert row.state == "failed" and row.mismatches >= 1 and row.errors_count == row.mismatches
    assert row.errors_reason == "files_not_restorable"
    errors = _errors(db, drill.id)
    assert damaged in [e.path for e in errors]  # the snapshot's path, not the scratch folder's
    assert {e.type for e in errors} <= {"blob_corrupt", "blob_missing", "content_mismatch"}
    assert _events(db, drill.id)[-1] == "drill_failed"
    assert not scratch_folder(settings, drill.id).exists()


def _restore_then(drill_run, change):
    """A restore into a folder beside the scratch folder, then ``change(staging)``, then every
    restored path moved in at once: the comparison (which follows the restore) only ever sees
    the changed tree."""
    real_restore = drill_run.restore_snapshot

    def restore_then_change(vault, snapshot_id, destination, **kwargs):
        staging = destination.parent / f"{destination.name}-staging"
        staging.mkdir()
        result = real_restore(vault, snapshot_id, staging, **kwargs)
        change(staging)
        for child in staging.iterdir():
            os.rename(child, destination / child.name)
        return result

    return restore_then_change


@pytest.mark.parametrize(
    ("name", "where"),
    [("file3.bin", "first"), ("big0.bin", "first"), ("big0.bin", "last")],
)
def test_a_restored_file_changed_on_disk_is_a_content_mismatch(
    db, settings, source, monkeypatch, name, where
):
    """The comparison reads the restored file back: bytes that differ from the manifest's on
    disk (whatever wrote them) fail the drill even when the vault read back clean, in any of
    a file's chunks (the file is cut where the manifest's chunks end)."""
    tree, _, backup = source
    import cloudbackup.domain.drill_run as drill_run

    vault = open_service_vault(db, settings, backup.vault_id)
    entry = next(e for e in vault.iter_entries(backup.snapshot_id) if e.path.endswith(b"/big0.bin"))
    assert len(entry.chunks) >= 2  # the big file's first and last bytes lie in other chunks

    def spoil(staging: Path) -> None:
        spoiled = next(staging.rglob(name))
        data = bytearray(spoiled.read_bytes())
        data[0 if where == "first" else -1] ^= 0x01
        spoiled.write_bytes(bytes(data))

    monkeypatch.setattr(drill_run, "restore_snapshot", _restore_then(drill_run, spoil))
    drill = _start(db, backup)
    assert execute_drill(db, settings, drill.id) == "failed"
    errors = _errors(db, drill.id)
    assert [(e.path.rsplit("/", 1)[-1], e.type) for e in errors] == [(name, "content_mismatch")]
    assert _row(db, drill.id).files_checked == tree.files


def test_a_file_missing_after_the_restore_is_reported_not_restored(
    db, settings, source, monkeypatch
):
    """A file the restore said nothing about, yet not there, fails the drill: nothing is taken
    as proven that the comparison did not read."""
    tree, _, backup = source
    import cloudbackup.domain.drill_run as drill_run

    def lose(staging: Path) -> None:
        next(staging.rglob("file5.bin")).unlink()

    monkeypatch.setattr(drill_run, "restore_snapshot", _restore_then(drill_run, lose))
    drill = _start(db, backup)
    assert execute_drill(db, settings, drill.id) == "failed"
    errors = _errors(db, drill.id)
    assert [(e.path.rsplit("/", 1)[-1], e.type) for e in errors] == [
        ("file5.bin", "file_not_restored")
    ]
    assert _row(db, drill.id).files_checked == tree.files


def test_each_file_is_removed_once_checked(db, settings, source, monkeypatch):
    """The scratch folder empties as the drill goes: the removal at the end finds folders
    (and the snapshot's links) only, so it adds little to the drill's time."""
    _, _, backup = source
    import cloudbackup.domain.drill_run as drill_run

    real_remove = drill_run.remove_scratch
    left: list[list[Path]] = []

    def remove_and_record(folder: Path) -> None:
        if folder.exists():
            left.append([p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()])
        real_remove(folder)

    monkeypatch.setattr(drill_run, "remove_scratch", remove_and_record)
    drill = _start(db, backup)
    assert execute_drill(db, settings, drill.id) == "passed"
    assert left == [[]]
    assert not scratch_folder(settings, drill.id).exists()


def test_a_path_that_is_not_normalized_is_never_read_or_removed(tmp_path: Path):
    """A manifest is data read from disk: a file entry naming ``..`` is a mismatch (the restore
    refuses it too), never a way to read or remove a file outside the scratch folder."""
    from cloudbackup.domain.drill_run import _check_file
    from cloudbackup.engine import Entry
    from cloudbackup.engine.dirfd import FolderCache

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not the drill's")
    entry = Entry(b"/../outside.txt", "file", 0o644, 0, size=15, chunks=(b"x" * 32,))
    folders = FolderCache()
    try:
        problem = _check_file(None, folders, os.fsencode(scratch), entry)  # type: ignore[arg-type]
    finally:
        folders.close()
    assert problem is not None and problem.type == "file_not_restored"
    assert outside.read_bytes() == b"not the drill's"


def test_the_scratch_folder_is_removed_when_the_drill_fails(db, settings, source, monkeypatch):
    _, _, backup = source
    import cloudbackup.domain.drill_run as drill_run

    def restore_then_break(vault, snapshot_id, destination, **kwargs):
        (destination / "partial").mkdir()
        (destination / "partial" / "x").write_bytes(b"x")
        (destination / "partial").chmod(0o500)  # read-only, as a snapshot's folder may be
        raise OSError("disk gone")

    monkeypatch.setattr(drill_run, "restore_snapshot", restore_then_break)
    drill = _start(db, backup)
    assert execute_drill(db, settings, drill.id) == "failed"
    row = _row(db, drill.id)
    assert row.errors_reason == "drill_failed" and "OSError" in row.errors_diagnostics
    assert not scratch_folder(settings, drill.id).exists()


def test_a_backup_that_is_not_restorable_or_not_the_projects_is_refused(db, settings, source):
    _, _, backup = source
    with pytest.raises(NotFound):
        DrillService(db, Recorder()).start("another-project", backup.id)
    with pytest.raises(NotFound):
        DrillService(db, Recorder()).start(backup.project_id, "no-such-backup")
    with db.transaction() as session:
        session.execute(sa.update(Backup).where(Backup.id == backup.id).values(restorable=False))
    with pytest.raises(Conflict):
        _start(db, backup)


def test_a_stop_before_the_claim_ends_the_drill_stopped(db, settings, source):
    _, _, backup = source
    drill = _start(db, backup)
    DrillService(db).update(backup.project_id, drill.id, DrillUpdate(state=D.STOP_REQUESTED), None)
    assert _row(db, drill.id).state == "stopped"
    assert execute_drill(db, settings, drill.id) == "noop"


def test_a_stop_after_the_claim_ends_the_drill_stopped(db, settings, source):
    _, _, backup = source
    drill = _start(db, backup)
    claim = claim_drill(db, settings, drill.id)
    assert claim is not None
    runner = DrillRun(db, settings, claim)
    DrillService(db).update(backup.project_id, drill.id, DrillUpdate(state=D.STOP_REQUESTED), None)
    assert runner.run() == "stopped"
    assert _row(db, drill.id).state == "stopped"
    assert not scratch_folder(settings, drill.id).exists()


def test_the_sweeper_republishes_a_drill_no_worker_claimed(db, settings, source):
    _, _, backup = source
    drill = _start(db, backup)
    recorder = Recorder()
    report = sweep(db, recorder, settings, now=utcnow() + timedelta(minutes=5))
    assert report.drills.republished == 1
    assert ("drill", drill.id, backup.agent_id) in recorder.published
