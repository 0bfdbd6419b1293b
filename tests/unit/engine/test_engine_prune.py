"""forget and prune: unreferenced data goes, live data stays, and running backups are safe."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from engine_trees import MIB, PASSWORD, chunk_ids, content_ids, describe, packs_in

from cloudbackup.engine import (
    BackupProgress,
    BackupResult,
    PruneProgress,
    PruneStopped,
    Vault,
    VaultLocked,
    forget,
    prune,
    restore_snapshot,
    run_backup,
    verify,
)
from cloudbackup.engine.locks import VaultLock
from cloudbackup.engine.vault import LockInfo


def write(folder: Path, name: str, content: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)


def back_up(vault: Vault, folder: Path, **kwargs: Any) -> BackupResult:
    kwargs.setdefault("on_progress", lambda p: None)
    kwargs.setdefault("should_stop", lambda: False)
    return run_backup(vault, [{"type": "folder", "path": str(folder)}], [], **kwargs)


def restores_identically(vault: Vault, snapshot_id: int, source: Path, tmp: Path) -> bool:
    destination = tmp / f"check-{snapshot_id}-{time.monotonic_ns()}"
    result = restore_snapshot(Vault(vault.root, password=PASSWORD), snapshot_id, destination)
    restored = destination / str(source).lstrip("/")
    return result.errors == [] and describe(restored) == describe(source)


@pytest.fixture
def two_snapshots(vault: Vault, tmp_path: Path) -> tuple[Path, Path]:
    """Snapshot 1 of folder ``a`` (3 MiB of its own), snapshot 2 of folder ``b``."""
    rng = random.Random(5)
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "only-a.bin", rng.randbytes(3 * MIB))
    write(b, "only-b.bin", rng.randbytes(2 * MIB))
    back_up(vault, a)
    back_up(vault, b)
    return a, b


def test_forget_removes_snapshots_but_no_data(
    vault: Vault, two_snapshots: tuple[Path, Path]
) -> None:
    chunks = chunk_ids(vault)

    result = forget(vault, [1, 7, 1])

    assert (result.removed, result.missing) == ([1], [7])
    assert vault.list_snapshots() == [2]
    assert chunk_ids(vault) == chunks  # data stays until prune
    assert vault.allocate() == 3  # ids are never reused


def test_prune_deletes_what_no_snapshot_references(
    vault: Vault, two_snapshots: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = two_snapshots
    only_a = set(content_ids(vault, (a / "only-a.bin").read_bytes()))
    before = chunk_ids(vault)
    forget(vault, [1])
    progress: list[PruneProgress] = []

    result = prune(vault, on_progress=progress.append)

    assert result.packs_removed == 2  # snapshot 1's data pack and its file list's pack
    assert result.packs_deferred == 0
    # only-a.bin's chunks (one or more: the vault's chunker seed is its own) and snapshot 1's
    # file list, and nothing else
    gone = before - chunk_ids(vault)
    assert only_a < gone and len(gone) == len(only_a) + 1 == result.chunks_deleted
    assert result.bytes_before - result.bytes_after > 3 * MIB - 64 * 1024
    assert result.bytes_after == vault.size()
    assert [p.phase for p in progress][-1] == "deleting"
    assert restores_identically(vault, 2, b, tmp_path)
    assert verify(vault).ok
    assert list((vault.root / "plans").glob("*")) == []
    # Nothing left to do the second time.
    again = prune(vault)
    assert (again.packs_removed, again.chunks_deleted, again.bytes_after) == (
        0,
        0,
        result.bytes_after,
    )


def test_a_mostly_dead_pack_is_repacked(vault: Vault, tmp_path: Path) -> None:
    rng = random.Random(6)
    both = tmp_path / "both"
    write(both, "small.bin", rng.randbytes(MIB // 2))
    write(both, "large.bin", rng.randbytes(4 * MIB))
    back_up(vault, both)  # one pack holding both files
    (both / "large.bin").unlink()
    back_up(vault, both)  # snapshot 2 only needs small.bin
    forget(vault, [1])
    packs_before = packs_in(vault.root)

    kept = prune(vault, repack_below=0.0)  # repacking off: the data pack is still partly live
    assert (kept.packs_removed, kept.packs_rewritten) == (1, 0)  # snapshot 1's file list

    result = prune(vault, repack_below=0.5)

    assert result.packs_rewritten == 1
    assert result.packs_removed == 1
    assert result.bytes_before - result.bytes_after > 3 * MIB
    assert not packs_before <= packs_in(vault.root)
    assert restores_identically(vault, 2, both, tmp_path)
    assert verify(vault).ok


def test_two_prunes_never_overlap_and_a_dead_ones_lock_is_taken_over(
    vault: Vault, two_snapshots: tuple[Path, Path]
) -> None:
    holder = vault.lock("prune", exclusive=True)
    try:
        with pytest.raises(VaultLocked, match="a prune of this vault is running"):
            prune(vault)
    finally:
        holder.release()
    # A prune that died an hour ago left its lock behind: it is stale, so it is taken over.
    hour_ago = time.time_ns() - 3600 * 10**9
    dead = LockInfo(kind="prune", id="dead", created_ns=hour_ago, refreshed_ns=hour_ago)
    vault.storage.put("locks/prune", msgspec.msgpack.encode(dead))
    assert prune(vault).packs_removed == 0


def test_a_stopped_prune_leaves_a_consistent_vault(
    vault: Vault, two_snapshots: tuple[Path, Path], tmp_path: Path
) -> None:
    _a, b = two_snapshots
    forget(vault, [1])
    with pytest.raises(PruneStopped):
        prune(vault, should_stop=lambda: True)
    assert restores_identically(vault, 2, b, tmp_path)
    assert prune(vault).packs_removed == 2  # the next prune does the work


def test_packs_of_a_crashed_backup_go_unless_a_backup_runs(vault: Vault, tmp_path: Path) -> None:
    rng = random.Random(7)
    src = tmp_path / "src"
    write(src, "f.bin", rng.randbytes(2 * MIB))

    def crash(progress: BackupProgress) -> None:
        if progress.bytes_completed:
            raise RuntimeError("worker killed")

    # A crash after a full pack was written but before its index: an unindexed pack.
    vault.storage.put("packs/ab/ab" + "0" * 62, os.urandom(1000))
    with pytest.raises(RuntimeError):
        back_up(vault, src, on_progress=crash)
    running = vault.lock("backup")
    try:
        assert prune(vault).packs_removed == 0  # it might be the running backup's
    finally:
        running.release()
    assert prune(vault).packs_removed == 1
    assert packs_in(vault.root) == set()


class PausedBackup:
    """A backup in a thread that stops mid-way (lock held, index read) until released."""

    def __init__(self, vault_root: Path, source: Path) -> None:
        self.paused = threading.Event()
        self.go_on = threading.Event()
        self.result: BackupResult | None = None
        self.error: BaseException | None = None

        def on_progress(progress: BackupProgress) -> None:
            if progress.bytes_completed and not self.paused.is_set():
                self.paused.set()
                assert self.go_on.wait(timeout=30)

        def run() -> None:
            try:
                self.result = back_up(
                    Vault(vault_root, password=PASSWORD), source, on_progress=on_progress
                )
            except BaseException as exc:  # re-raised in the test thread by finish()
                self.error = exc

        self.thread = threading.Thread(target=run)
        self.thread.start()
        assert self.paused.wait(timeout=30)

    def finish(self) -> BackupResult:
        self.go_on.set()
        self.thread.join(timeout=60)
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def test_prune_beside_a_running_backup_never_breaks_it(vault: Vault, tmp_path: Path) -> None:
    rng = random.Random(8)
    src = tmp_path / "src"
    write(src, "kept.bin", rng.randbytes(3 * MIB))
    write(src, "also.bin", rng.randbytes(MIB))
    back_up(vault, src)
    # Snapshot 1 is forgotten: its chunks are now unreferenced, but the same files are being
    # backed up again right now, and that backup deduplicates against exactly those chunks.
    forget(vault, [1])
    running = PausedBackup(vault.root, src)

    during = prune(vault)  # runs while the backup holds its lock, mid-way through its files

    assert during.packs_deferred >= 1
    assert during.packs_removed == 0
    result = running.finish()
    assert result.files_backed_up == 0  # it reused the chunks prune did not delete
    assert restores_identically(vault, result.snapshot_id, src, tmp_path)

    after = prune(vault)  # the chunks are referenced again: nothing of them goes

    assert restores_identically(vault, result.snapshot_id, src, tmp_path)
    assert verify(vault).ok
    assert after.packs_deferred == 0


def test_a_backup_starting_after_a_plan_never_reuses_planned_packs(
    vault: Vault, tmp_path: Path
) -> None:
    rng = random.Random(9)
    src, other = tmp_path / "src", tmp_path / "other"
    write(src, "data.bin", rng.randbytes(2 * MIB))
    write(other, "x.bin", rng.randbytes(MIB))
    back_up(vault, src)
    forget(vault, [1])
    older = PausedBackup(vault.root, other)  # an older backup forces prune to defer its plan
    first = prune(vault)
    assert first.packs_deferred >= 1

    # This backup starts after the plan exists: it must store data.bin again, not reuse it.
    newer = back_up(vault, src)
    assert newer.files_backed_up == 1
    older.finish()
    second = prune(vault)  # no backup runs now: the plan is carried out

    assert second.packs_removed >= 1
    assert restores_identically(vault, newer.snapshot_id, src, tmp_path)
    assert verify(vault).ok


def test_backups_and_prunes_racing_freely_lose_nothing(vault: Vault, tmp_path: Path) -> None:
    rng = random.Random(10)
    sources = [tmp_path / f"src{i}" for i in range(3)]
    for i, src in enumerate(sources):
        write(src, "shared.bin", random.Random(0).randbytes(MIB))
        write(src, f"own{i}.bin", rng.randbytes(MIB + i))
    failures: list[BaseException] = []
    done = threading.Event()

    def backups() -> None:
        try:
            for round_ in range(15):
                back_up(Vault(vault.root, password=PASSWORD), sources[round_ % 3])
                snapshots = Vault(vault.root, password=PASSWORD).list_snapshots()
                if len(snapshots) > 2:
                    forget(Vault(vault.root, password=PASSWORD), snapshots[:-2])
        except BaseException as exc:
            failures.append(exc)
        finally:
            done.set()

    def prunes() -> None:
        try:
            while not done.is_set():
                prune(Vault(vault.root, password=PASSWORD), lock_margin_seconds=0.0)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=backups), threading.Thread(target=prunes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    for snapshot_id in vault.list_snapshots():
        source = sources[(snapshot_id - 1) % 3]
        assert restores_identically(vault, snapshot_id, source, tmp_path)
    assert verify(Vault(vault.root, password=PASSWORD)).ok


def test_a_snapshot_forgotten_while_prune_lists_them_is_skipped(
    vault: Vault, two_snapshots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_list = vault.list_snapshots

    def list_then_forget() -> list[int]:
        listed = real_list()
        if listed[0] == 1:
            vault.delete_snapshot(1)  # a forget lands between the listing and the read
        return listed

    monkeypatch.setattr(vault, "list_snapshots", list_then_forget)
    result = prune(vault)

    assert result.unreadable_snapshots == []
    monkeypatch.undo()
    assert vault.list_snapshots() == [2]
    assert verify(Vault(vault.root, password=PASSWORD)).ok


def test_a_backup_finishing_while_prune_decides_keeps_its_data(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(11)
    src = tmp_path / "src"
    write(src, "data.bin", rng.randbytes(2 * MIB))
    back_up(vault, src)
    forget(vault, [1])
    results: list[BackupResult] = []
    real_put = vault.put_object

    def backup_then_put(name: str, data: bytes, **kwargs: Any) -> int:
        if name.startswith("plans/") and not results:
            # The worst moment: after prune read the snapshots, before its plan is visible and
            # before it lists the locks again. The backup reuses the unreferenced chunks and is
            # done (its lock gone) before prune looks.
            results.append(back_up(Vault(vault.root, password=PASSWORD), src))
        return real_put(name, data, **kwargs)

    monkeypatch.setattr(vault, "put_object", backup_then_put)
    prune(vault)

    (result,) = results
    assert result.files_backed_up == 0
    assert restores_identically(vault, result.snapshot_id, src, tmp_path)
    assert verify(Vault(vault.root, password=PASSWORD)).ok


def test_a_damaged_file_list_makes_prune_delete_nothing(
    vault: Vault, two_snapshots: tuple[Path, Path]
) -> None:
    # Snapshot 1's file list is in a pack of its own: damage it, and forget snapshot 2 so that
    # there would be something to delete.
    (tree_chunk,) = vault.read_info(1).tree
    loc = vault.load_index().get(tree_chunk)
    assert loc is not None
    path = vault.root / "packs" / loc.pack[:2] / loc.pack
    data = bytearray(path.read_bytes())
    data[loc.offset + loc.length // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    forget(vault, [2])
    size = vault.size()

    result = prune(vault)

    # Snapshot 1's needs are unknown: deleting anything could destroy what it still has.
    assert result.unreadable_snapshots == [1]
    assert (result.packs_removed, result.chunks_deleted) == (0, 0)
    assert vault.size() == size
    assert any("file list is unreadable" in d.reason for d in verify(vault).damaged)


def test_two_takeovers_of_a_dead_prunes_lock_cannot_both_win(
    vault: Vault, two_snapshots: tuple[Path, Path]
) -> None:
    """The second of two pruners that both found the lock stale loses, whatever the timing:
    here the rival takes the lock over between our reading it and our taking it."""
    hour_ago = time.time_ns() - 3600 * 10**9
    dead = LockInfo(kind="prune", id="dead", created_ns=hour_ago, refreshed_ns=hour_ago)
    vault.storage.put("locks/prune", msgspec.msgpack.encode(dead))
    storage = vault.storage
    rivals: list[VaultLock] = []
    started: list[bool] = []
    real_get = storage.get

    def get_then_rival(name: str) -> bytes:
        data = real_get(name)
        if name.startswith("locks/prune") and not started:
            started.append(True)
            rivals.append(VaultLock(storage, "prune", exclusive=True))  # the rival wins first
        return data

    storage.get = get_then_rival  # type: ignore[method-assign]
    try:
        with pytest.raises(VaultLocked, match="a prune of this vault is running"):
            VaultLock(storage, "prune", exclusive=True)
    finally:
        storage.get = real_get  # type: ignore[method-assign]
        for rival in rivals:
            rival.release()
    assert rivals, "the rival never ran"
    assert prune(vault).packs_removed == 0  # released: the lock can be taken again
