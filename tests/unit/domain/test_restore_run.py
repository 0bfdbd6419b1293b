"""Running restores in-process on SQLite with the real engine and a real vault: what lands on
disk, selections, per-file errors, stops, duplicate deliveries, re-drives and the sweeper."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa

from cloudbackup.domain.configurations import PathItem
from cloudbackup.domain.restore_run import RestoreRun, claim_restore, execute_restore
from cloudbackup.domain.restores import (
    RESTORE_RUNS,
    RestoreRequest,
    RestoreService,
    RestoreUpdate,
)
from cloudbackup.domain.roots import RootsPolicy
from cloudbackup.domain.run_states import RestoreState
from cloudbackup.domain.sweeper import sweep_runs
from cloudbackup.domain.vaults import open_service_vault
from cloudbackup.engine import RestoreProgress, restore_snapshot
from cloudbackup.store.tables import Backup, Event, Restore, RestoreError, utcnow
from factories import rows
from factories.runs import Recorder, backed_up
from factories.trees import digests, make_tree


@pytest.fixture
def source(db, settings, tmp_path: Path):
    tree = make_tree(tmp_path / "src", files=40, size=6000)
    agent, config, backup = backed_up(db, settings, tree.root, exclude=["cache"])
    return tree, agent, config, backup


def _request(backup, agent, destination: Path | None, **overrides) -> RestoreRequest:
    values = {
        "backup_id": backup.id,
        "destination_agent_id": agent.id,
        "destination_path": None if destination is None else str(destination),
        "overwrite_files": False,
        "encrypted_password_hex": None,
        "inclusions": (),
        "exclusions": (),
    }
    values.update(overrides)
    return RestoreRequest(**values)


def _items(kind: str, *paths: str) -> tuple[PathItem, ...]:
    return tuple(PathItem(type=kind, path=p) for p in paths)


def _start(db, settings, request: RestoreRequest, project_id: str = "110011") -> Restore:
    return RestoreService(db, Recorder(), RootsPolicy.from_settings(settings)).start(
        project_id, request
    )


def _row(db, restore_id) -> Restore:
    with db.transaction() as session:
        return session.execute(sa.select(Restore).where(Restore.id == restore_id)).scalar_one()


def _errors(db, restore_id) -> list[RestoreError]:
    with db.transaction() as session:
        return list(
            session.execute(
                sa.select(RestoreError)
                .where(RestoreError.restore_id == restore_id)
                .order_by(RestoreError.index)
            ).scalars()
        )


def _events(db, restore_id) -> list[str]:
    with db.transaction() as session:
        return list(
            session.execute(
                sa.select(Event.event).where(Event.restore_id == restore_id).order_by(Event.id)
            ).scalars()
        )


def _restored(out: Path, root: Path) -> Path:
    return out / str(root).lstrip("/")


def test_whole_backup_restores_byte_identical_once(db, settings, source, tmp_path):
    tree, agent, _, backup = source
    out = tmp_path / "out"
    restore = _start(db, settings, _request(backup, agent, out))

    assert execute_restore(db, settings, restore.id) == "completed"
    assert execute_restore(db, settings, restore.id) == "noop"  # a second delivery
    expected = {k: v for k, v in digests(tree.root).items() if not k.startswith("cache")}
    assert digests(_restored(out, tree.root)) == expected
    row = _row(db, restore.id)
    assert (row.files_restored, row.bytes_restored) == (tree.files, tree.bytes)
    assert row.started_time is not None and row.ended_time is not None and row.attempts == 1
    assert row.errors_count == 0 and _errors(db, restore.id) == []
    assert [e for e in _events(db, restore.id) if e != "restore_progress"] == [
        "restore_start_request",
        "restore_queued",
        "restore_preparing",
        "restore_in_progress",
        "restore_completed",
    ]


def test_inclusions_and_exclusions_select_inside_the_backup(db, settings, source, tmp_path):
    tree, agent, _, backup = source
    root = tree.root
    out = tmp_path / "out"
    request = _request(
        backup,
        agent,
        out,
        inclusions=_items("folder", f"{root}/d0/")
        + _items("file", f"{root}/d1/sub1/file1.bin", f"{root}/link-to-d0")
        + _items("folder", f"{root}/nothing-here/"),
        exclusions=_items("folder", f"{root}/d0/sub1/")
        + _items("file", f"{root}/d0/sub0/file0.bin"),
    )
    restore = _start(db, settings, request)

    assert execute_restore(db, settings, restore.id) == "completed_with_errors"
    every = digests(root)
    expected = {
        path: digest
        for path, digest in every.items()
        if (
            (path.startswith("d0") and not path.startswith("d0/sub1/"))
            and path != "d0/sub0/file0.bin"
        )
        or path in ("d1/sub1/file1.bin", "link-to-d0")
    }
    got = digests(_restored(out, root))
    assert {k: v for k, v in got.items() if v != "dir"} == {
        k: v for k, v in expected.items() if v != "dir"
    }
    assert "d0/sub1/file10.bin" in every and "d0/sub1" not in got  # excluded: left out
    row = _row(db, restore.id)
    files = [k for k, v in expected.items() if v != "dir" and not v.startswith("link:")]
    assert row.files_restored == len(files)
    assert row.errors_reason == "unable_to_process_some_files"
    assert row.errors_diagnostics == "Some files may not have been restored."
    [error] = _errors(db, restore.id)
    assert (error.index, error.path, error.type) == (
        0,
        f"{root}/nothing-here/",
        "file_or_folder_missing",
    )


def test_a_folder_inclusion_does_not_select_a_sibling_with_the_same_prefix(db, settings, tmp_path):
    root = tmp_path / "src"
    (root / "web").mkdir(parents=True)
    (root / "website").mkdir()
    (root / "web" / "a").write_bytes(b"a")
    (root / "website" / "b").write_bytes(b"b")
    agent, _, backup = backed_up(db, settings, root)
    out = tmp_path / "out"
    restore = _start(
        db, settings, _request(backup, agent, out, inclusions=_items("folder", f"{root}/web"))
    )
    assert execute_restore(db, settings, restore.id) == "completed"
    assert digests(_restored(out, root)) == {"web": "dir", "web/a": digests(root)["web/a"]}


def test_files_that_cannot_be_written_end_completed_with_errors(db, settings, source, tmp_path):
    tree, agent, _, backup = source
    out = tmp_path / "out"
    blocked = _restored(out, tree.root) / "d0" / "sub0" / "file0.bin"
    (blocked / "inside").mkdir(parents=True)  # a non-empty directory where a file must go
    kept = _restored(out, tree.root) / "d1" / "sub1" / "file1.bin"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"mine")

    overwrite = _start(db, settings, _request(backup, agent, out, overwrite_files=True))
    assert execute_restore(db, settings, overwrite.id) == "completed_with_errors"
    errors = _errors(db, overwrite.id)
    assert [(e.path, e.type) for e in errors] == [(str(blocked), "file_unwritable")]
    assert errors[0].exception_code is not None and errors[0].exception_description
    assert kept.read_bytes() != b"mine"  # overwritten as asked
    row = _row(db, overwrite.id)
    assert row.files_restored == tree.files - 1 and row.errors_count == 1

    kept.write_bytes(b"mine")
    keep = _start(db, settings, _request(backup, agent, out, overwrite_files=False))
    assert execute_restore(db, settings, keep.id) == "completed_with_errors"
    assert kept.read_bytes() == b"mine"  # overwrite_files false never replaces a file
    assert (str(kept), "file_exists") in [(e.path, e.type) for e in _errors(db, keep.id)]


def test_stop_ends_a_running_restore_within_two_seconds(db, settings, tmp_path):
    tree = make_tree(tmp_path / "src", files=4, big_files=8, big_size=512 * 1024)
    agent, _, backup = backed_up(db, settings, tree.root)
    slow = msgspec.structs.replace(settings, restore_max_bps=1024 * 1024, progress_interval=0.1)
    restore = _start(db, settings, _request(backup, agent, tmp_path / "out"))
    outcome: list[str] = []
    runner = threading.Thread(target=lambda: outcome.append(execute_restore(db, slow, restore.id)))
    runner.start()
    deadline = time.monotonic() + 10
    seen: list[int] = []
    while time.monotonic() < deadline:
        row = _row(db, restore.id)
        if row.state == "in_progress" and row.bytes_restored > 0:
            seen.append(row.bytes_restored)
            if len(set(seen)) >= 2:
                break
        time.sleep(0.05)
    assert len(set(seen)) >= 2, "counters did not grow while running"
    RestoreService(db).update(
        "110011", restore.id, RestoreUpdate(state=RestoreState.STOP_REQUESTED), None
    )
    asked = time.monotonic()
    runner.join(10)
    assert outcome == ["stopped"] and time.monotonic() - asked < 2.0
    row = _row(db, restore.id)
    # Under load the last block may land just before the stop is seen: bytes may reach the total.
    assert row.state == "stopped" and 0 < row.bytes_restored <= tree.bytes
    assert _events(db, restore.id)[-2:] == ["restore_stop_request", "restore_stopped"]
    assert "restore_progress" in _events(db, restore.id) or row.bytes_restored > 0


def test_stop_requested_while_queued_ends_stopped(db, settings, source, tmp_path):
    _, agent, _, backup = source
    restore = _start(db, settings, _request(backup, agent, tmp_path / "out"))
    claim = claim_restore(db, settings, restore.id)
    assert claim is not None
    RestoreService(db).update(
        "110011", restore.id, RestoreUpdate(state=RestoreState.STOP_REQUESTED), None
    )
    assert _row(db, restore.id).state == "stop_requested"  # a worker holds it: it ends it
    assert RestoreRun(db, settings, claim).run() == "stopped"
    assert not (tmp_path / "out").exists()


def test_a_backup_expired_meanwhile_fails_the_restore_with_a_reason(db, settings, source, tmp_path):
    _, agent, _, backup = source
    restore = _start(db, settings, _request(backup, agent, tmp_path / "out"))
    with db.transaction() as session:
        session.execute(sa.update(Backup).where(Backup.id == backup.id).values(restorable=False))
    assert execute_restore(db, settings, restore.id) == "failed"
    row = _row(db, restore.id)
    assert (
        row.errors_reason == "restore_failed" and "no longer restorable" in row.errors_diagnostics
    )
    assert _events(db, restore.id)[-1] == "restore_failed"


def test_a_run_whose_worker_died_is_redriven_then_failed(db, settings, source, tmp_path):
    _, agent, _, backup = source
    restore = _start(db, settings, _request(backup, agent, tmp_path / "out"))
    first = claim_restore(db, settings, restore.id)
    assert first is not None
    assert execute_restore(db, settings, restore.id) == "busy"  # its heartbeat is fresh
    stale = utcnow() - timedelta(seconds=settings.heartbeat_timeout_seconds + 5)
    for attempt in range(2, settings.max_attempts + 1):
        with db.transaction() as session:
            session.execute(
                sa.update(Restore).where(Restore.id == restore.id).values(heartbeat_at=stale)
            )
        claim = claim_restore(db, settings, restore.id)
        assert claim is not None and claim.attempt == attempt
    # The first owner can no longer write: its attempt is not the row's.
    assert RestoreRun(db, settings, first).run() == "lost"
    with db.transaction() as session:
        session.execute(
            sa.update(Restore).where(Restore.id == restore.id).values(heartbeat_at=stale)
        )
    assert claim_restore(db, settings, restore.id) is None
    row = _row(db, restore.id)
    assert row.state == "failed" and row.errors_reason == "restore_failed"
    assert "stopped responding" in row.errors_diagnostics


def test_a_redriven_run_completes(db, settings, source, tmp_path):
    _tree, agent, _, backup = source
    restore = _start(db, settings, _request(backup, agent, tmp_path / "out", overwrite_files=True))
    assert claim_restore(db, settings, restore.id) is not None
    stale = utcnow() - timedelta(seconds=settings.heartbeat_timeout_seconds + 5)
    with db.transaction() as session:
        session.execute(
            sa.update(Restore).where(Restore.id == restore.id).values(heartbeat_at=stale)
        )
    assert execute_restore(db, settings, restore.id) == "completed"
    assert _row(db, restore.id).attempts == 2


def test_a_redriven_run_without_overwrite_completes_over_what_it_wrote(
    db, settings, source, tmp_path
):
    tree, agent, _, backup = source
    out = tmp_path / "out"
    restore = _start(db, settings, _request(backup, agent, out))
    assert claim_restore(db, settings, restore.id) is not None
    # The first attempt wrote every file, then its worker died before it could finish.
    vault = open_service_vault(db, settings, backup.vault_id)
    assert restore_snapshot(vault, backup.snapshot_id, out).errors == []
    stale = utcnow() - timedelta(seconds=settings.heartbeat_timeout_seconds + 5)
    with db.transaction() as session:
        session.execute(
            sa.update(Restore).where(Restore.id == restore.id).values(heartbeat_at=stale)
        )

    assert execute_restore(db, settings, restore.id) == "completed"
    row = _row(db, restore.id)
    assert row.attempts == 2 and _errors(db, restore.id) == []
    assert (row.files_restored, row.bytes_restored) == (tree.files, tree.bytes)
    expected = {k: v for k, v in digests(tree.root).items() if not k.startswith("cache")}
    assert digests(_restored(out, tree.root)) == expected


def test_a_redriven_run_with_overwrite_keeps_what_it_wrote_and_never_counts_back(
    db, settings, source, tmp_path
):
    tree, agent, _, backup = source
    out = tmp_path / "out"
    restore = _start(db, settings, _request(backup, agent, out, overwrite_files=True))
    assert claim_restore(db, settings, restore.id) is not None
    # The first attempt wrote every file and reported most of them, then its worker died.
    vault = open_service_vault(db, settings, backup.vault_id)
    assert restore_snapshot(vault, backup.snapshot_id, out).errors == []
    inodes = {p: p.stat().st_ino for p in _restored(out, tree.root).rglob("*") if p.is_file()}
    stale = utcnow() - timedelta(seconds=settings.heartbeat_timeout_seconds + 5)
    earlier = {"files_restored": tree.files - 1, "bytes_restored": tree.bytes - 1}
    with db.transaction() as session:
        session.execute(
            sa.update(Restore).where(Restore.id == restore.id).values(heartbeat_at=stale, **earlier)
        )
    claim = claim_restore(db, settings, restore.id)
    assert claim is not None and claim.resumed
    run = RestoreRun(db, settings, claim)
    # Its first readings, before it has found the earlier files again, do not go back.
    run.progress = RestoreProgress(1, 10, 10, tree.files, tree.bytes, 0, bytes_in_place=10)
    assert run.counter_values() == earlier

    assert run.run() == "completed"
    row = _row(db, restore.id)
    assert (row.files_restored, row.bytes_restored) == (tree.files, tree.bytes)
    assert {p: p.stat().st_ino for p in inodes} == inodes  # none written again


def test_sweeper_republishes_waiting_and_stale_restores(db, settings, source, tmp_path):
    _, agent, _, backup = source
    waiting = _start(db, settings, _request(backup, agent, tmp_path / "a"))
    running = _start(db, settings, _request(backup, agent, tmp_path / "b"))
    assert claim_restore(db, settings, running.id) is not None
    recorder = Recorder()
    assert (
        sweep_runs(RESTORE_RUNS, db, recorder, settings).republished == 0
    )  # just published: not yet
    later = utcnow() + timedelta(seconds=settings.sweep_after_seconds + 1)
    report = sweep_runs(RESTORE_RUNS, db, recorder, settings, now=later)
    assert (report.republished, report.redriven) == (1, 0)
    assert recorder.published == [("restore", waiting.id, agent.id)]
    much_later = utcnow() + timedelta(seconds=settings.heartbeat_timeout_seconds + 5)
    report = sweep_runs(RESTORE_RUNS, db, recorder, settings, now=much_later)
    assert report.redriven == 1 and ("restore", running.id, agent.id) in recorder.published


def test_restore_onto_another_agent_is_published_for_that_agent(db, settings, source, tmp_path):
    _, _, _, backup = source
    other = rows.agent(db)
    recorder = Recorder()
    service = RestoreService(db, recorder, RootsPolicy.from_settings(settings))
    restore = service.start("110011", _request(backup, other, tmp_path / "o"))
    assert recorder.published == [("restore", restore.id, other.id)]
