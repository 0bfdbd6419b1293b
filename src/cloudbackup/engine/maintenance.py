"""Vault maintenance for cleanups (spec §5): forget snapshots, prune unused data.

(``verify``, the read-back check of packs, has its module.)

Prune runs safely beside backups of the same vault (see docs/engine.md): it announces the packs
it wants to delete in a *plan* before it looks at the backup locks, backups that start later never
reuse chunks of planned packs, and a planned pack is deleted only once no live backup is older
than the plan. Everything that replaces deleted data (repacked chunks, the new index) is durable
before anything is deleted, so a prune that stops or crashes leaves a consistent vault.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

import msgspec

from cloudbackup.engine.checkpoints import checkpoint_chunks
from cloudbackup.engine.errors import ChunkError, PruneStopped
from cloudbackup.engine.index import BlobRef, Index, IndexFile, IndexPack
from cloudbackup.engine.locks import PLAN_PREFIX, LockInfo, Plan
from cloudbackup.engine.packs import ChunkWriter, pack_name
from cloudbackup.engine.snapshot import SnapshotInfo
from cloudbackup.engine.vault import Vault

#: Clock skew and write latency allowed between a plan's timestamp and a lock's.
LOCK_MARGIN_SECONDS: Final = 5.0
_encoder = msgspec.msgpack.Encoder()


class ForgetResult(msgspec.Struct, frozen=True):
    removed: list[int]
    missing: list[int]


class PruneProgress(msgspec.Struct, frozen=True):
    phase: str  # "scanning", "repacking" or "deleting"
    done: int
    total: int


class PruneResult(msgspec.Struct, frozen=True):
    bytes_before: int
    bytes_after: int
    packs_removed: int
    packs_rewritten: int
    chunks_deleted: int
    packs_deferred: int
    duration_seconds: float
    #: Snapshots whose file list could not be read: prune then deletes nothing at all, since it
    #: cannot tell what they need (``verify`` says what is damaged).
    unreadable_snapshots: list[int] = msgspec.field(default_factory=list)


# --- forget ------------------------------------------------------------------------------------


def forget(vault: Vault, snapshot_ids: Iterable[int]) -> ForgetResult:
    """Remove the snapshot objects of ``snapshot_ids``; their data stays until ``prune``."""
    removed: list[int] = []
    missing: list[int] = []
    for snapshot_id in sorted(set(snapshot_ids)):
        (removed if vault.delete_snapshot(snapshot_id) else missing).append(snapshot_id)
    return ForgetResult(removed=removed, missing=missing)


# --- prune -------------------------------------------------------------------------------------


def _live_backups(vault: Vault) -> list[LockInfo]:
    return [lock for lock in vault.list_locks() if lock.kind == "backup" and not lock.stale]


def prune(
    vault: Vault,
    *,
    on_progress: Callable[[PruneProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    repack_below: float = 0.5,
    lock_margin_seconds: float = LOCK_MARGIN_SECONDS,
) -> PruneResult:
    """Delete data no snapshot references; rewrite packs whose live fraction is below
    ``repack_below`` (0 disables repacking). Raises ``VaultLocked`` if another prune runs and
    ``PruneStopped`` on a stop. If a snapshot's file list cannot be read, nothing is deleted
    (that snapshot's needs are unknown) and the result lists it in ``unreadable_snapshots``."""
    if not 0.0 <= repack_below <= 1.0:
        raise ValueError("repack_below must be between 0 and 1")
    started = time.monotonic()
    report = _PruneReport(on_progress, should_stop)
    with vault.lock("prune", exclusive=True):
        bytes_before = vault.size()
        scan = _scan(vault)
        unreadable = _read_references(vault, scan, report)
        if unreadable:
            return PruneResult(
                bytes_before=bytes_before,
                bytes_after=bytes_before,
                packs_removed=0,
                packs_rewritten=0,
                chunks_deleted=0,
                packs_deferred=0,
                duration_seconds=time.monotonic() - started,
                unreadable_snapshots=unreadable,
            )
        delete, repack = _condemn(scan, repack_below)
        condemned = delete | repack
        announced, new_plan_name = _announce(vault, scan.old_plans, condemned)
        executable = _executable(vault, scan, condemned, announced, lock_margin_seconds)
        deferred = condemned - executable
        packs_rewritten, chunks_deleted = _delete(vault, scan, executable, repack, report)
        _retire_plans(vault, scan.old_plans, new_plan_name, deferred)
        vault.forget_cached_index()
        return PruneResult(
            bytes_before=bytes_before,
            bytes_after=vault.size(),
            packs_removed=len(executable),
            packs_rewritten=packs_rewritten,
            chunks_deleted=chunks_deleted,
            packs_deferred=len(deferred),
            duration_seconds=time.monotonic() - started,
        )


class _PruneReport:
    """Reports a prune's progress and raises ``PruneStopped`` once a stop is requested."""

    def __init__(
        self,
        on_progress: Callable[[PruneProgress], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.on_progress = on_progress
        self.should_stop = should_stop

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(PruneProgress(phase=phase, done=done, total=total))
        if self.should_stop is not None and self.should_stop():
            raise PruneStopped("stop requested")


@dataclass
class _Scan:
    """What a prune read of the vault before deciding anything, and the views derived from it."""

    listed: dict[str, int]  # every pack object: id → size
    files: dict[str, IndexFile]  # every index object, by name
    locks_at_start: list[LockInfo]  # backups live when the snapshots were read
    infos: list[SnapshotInfo]
    old_plans: list[tuple[str, Plan]]
    pack_refs: dict[str, IndexPack] = field(init=False)  # every indexed pack, by id
    # Lock id of the backup that indexed each pack (None: a prune).
    pack_writer: dict[str, str | None] = field(init=False)
    # A chunk stored twice (a repack, or a backup that stored it again beside a plan) lives
    # in one *keeper* pack: one that exists and, if possible, is not planned for deletion.
    # Copies elsewhere count as dead.
    keepers: Index = field(init=False)
    referenced: set[bytes] = field(default_factory=set)  # chunks some snapshot needs

    def __post_init__(self) -> None:
        self.pack_refs, self.pack_writer = {}, {}
        for file in self.files.values():
            for pack in file.packs:
                if pack.id not in self.pack_refs:
                    self.pack_refs[pack.id] = pack
                    self.pack_writer[pack.id] = file.writer
        planned_before = {p for _name, plan in self.old_plans for p in plan.packs}
        self.keepers = Index.of(
            sorted(
                self.pack_refs.values(),
                key=lambda r: (r.id not in self.listed, r.id in planned_before),
            )
        )

    def keeps(self, pack_id: str, blob: BlobRef) -> bool:
        """Whether ``blob`` of ``pack_id`` is live: referenced, and this is its keeper pack."""
        loc = self.keepers.get(blob.id)
        return loc is not None and loc.pack == pack_id and blob.id in self.referenced


def _scan(vault: Vault) -> _Scan:
    # The order of these reads is what makes prune safe; see docs/engine.md.
    listed = vault.pack_sizes()
    files = dict(vault.index_files())
    locks_at_start = _live_backups(vault)
    infos = vault.snapshot_infos()
    for name, file in vault.index_files():
        files.setdefault(name, file)
    old_plans = vault.list_plans()
    return _Scan(listed, files, locks_at_start, infos, old_plans)


def _read_references(vault: Vault, scan: _Scan, report: _PruneReport) -> list[int]:
    """Fill ``scan.referenced`` (the snapshots' chunks, and those of live checkpoints: the
    work of unfinished backups); returns the snapshots whose file list is unreadable."""
    unreadable: list[int] = []
    scan.referenced |= checkpoint_chunks(vault)
    for done, info in enumerate(scan.infos, 1):
        try:
            scan.referenced |= _chunks_used(vault, info, scan.keepers)
        except (ChunkError, msgspec.DecodeError):
            unreadable.append(info.snapshot_id)
        report("scanning", done, len(scan.infos))
    return unreadable


def _chunks_used(vault: Vault, info: SnapshotInfo, index: Index) -> set[bytes]:
    """Every chunk a snapshot needs, its file list's and its files' (``ChunkError`` or
    ``msgspec.DecodeError`` when its file list is unreadable)."""
    used = set(info.tree)
    for entry in vault.iter_entries(info, index=index):
        used.update(entry.chunks)
    return used


def _condemn(scan: _Scan, repack_below: float) -> tuple[set[str], set[str]]:
    """The packs to delete whole, and those to rewrite (too little of them is live)."""
    running_at_start = {lock.id for lock in scan.locks_at_start}
    delete: set[str] = set()
    repack: set[str] = set()
    for pack_id, size in scan.listed.items():
        indexed = scan.pack_refs.get(pack_id)
        if indexed is None:
            # Not indexed: a crashed writer's, or a running backup's not yet indexed pack.
            if not running_at_start:
                delete.add(pack_id)
            continue
        if scan.pack_writer[pack_id] in running_at_start:
            continue  # written by a backup that is still running
        live = sum(b.length for b in indexed.blobs if scan.keeps(pack_id, b))
        if live == 0:
            delete.add(pack_id)
        elif repack_below > 0 and live / max(size, 1) < repack_below:
            repack.add(pack_id)
    return delete, repack


def _announce(
    vault: Vault, old_plans: list[tuple[str, Plan]], condemned: set[str]
) -> tuple[dict[str, int], str | None]:
    """When each condemned pack was first announced, writing a plan for any not announced yet;
    returns those times and the new plan's name (None: no new plan)."""
    announced: dict[str, int] = {}
    for _name, plan in old_plans:
        for pack_id in plan.packs:
            announced[pack_id] = min(announced.get(pack_id, plan.created_ns), plan.created_ns)
    if not condemned - announced.keys():
        return announced, None
    plan = Plan(id=secrets.token_hex(8), created_ns=time.time_ns(), packs=sorted(condemned))
    name = f"{PLAN_PREFIX}{plan.id}"
    vault.put_object(name, _encoder.encode(plan))
    for pack_id in condemned:
        announced.setdefault(pack_id, plan.created_ns)
    return announced, name


def _executable(
    vault: Vault,
    scan: _Scan,
    condemned: set[str],
    announced: dict[str, int],
    lock_margin_seconds: float,
) -> set[str]:
    """The condemned packs no backup can still be using."""
    # Only now look at who is running: a backup that started after the plan was written
    # has read it and will not reuse any planned pack.
    margin = int(lock_margin_seconds * 1e9)
    running = _live_backups(vault)
    # Backups live when the snapshots were read may have written one since (and released
    # their lock): they count as running too.
    still_locked = {r.id for r in running}
    running += [lock for lock in scan.locks_at_start if lock.id not in still_locked]
    executable = {
        p for p in condemned if all(lock.created_ns > announced[p] + margin for lock in running)
    }
    # A backup that read the index before the plan existed and finished before the locks
    # were listed again left a snapshot we have not seen: keep every pack it uses.
    seen = {i.snapshot_id for i in scan.infos}
    executable -= _packs_of_new_snapshots(vault, seen, scan.pack_refs)
    # Such a backup may have stopped instead, leaving a checkpoint: keep what it lists too.
    return executable - _packs_holding(checkpoint_chunks(vault) - scan.referenced, scan.pack_refs)


def _packs_holding(chunks: set[bytes], pack_refs: dict[str, IndexPack]) -> set[str]:
    if not chunks:
        return set()
    return {pack_id for pack_id, ref in pack_refs.items() if any(b.id in chunks for b in ref.blobs)}


def _delete(
    vault: Vault, scan: _Scan, executable: set[str], repack: set[str], report: _PruneReport
) -> tuple[int, int]:
    """Rewrite the live chunks of the packs to repack, then delete ``executable`` packs and
    the index objects naming them; returns the packs rewritten and the chunks deleted."""
    if not executable:
        return 0, 0
    kept = [ref for pack_id, ref in scan.pack_refs.items() if pack_id not in executable]
    writer = ChunkWriter(vault, Index.of(kept), writer=None)
    to_repack = sorted(executable & repack)
    chunks_deleted = 0
    for done, pack_id in enumerate(to_repack, 1):
        chunks_deleted += _repack(vault, writer, scan.pack_refs[pack_id], scan.keeps)
        report("repacking", done, len(to_repack))
    writer.flush()
    for pack_id in executable - repack:
        dead = scan.pack_refs.get(pack_id)
        chunks_deleted += len(dead.blobs) if dead is not None else 0
    # The index without the condemned packs is durable before any of them goes.
    vault.write_index(kept, writer=None)
    for name in scan.files:
        vault.storage.delete(name)
    for done, pack_id in enumerate(sorted(executable), 1):
        vault.storage.delete(pack_name(pack_id))
        report("deleting", done, len(executable))
    return len(to_repack), chunks_deleted


def _retire_plans(
    vault: Vault, old_plans: list[tuple[str, Plan]], new_plan: str | None, deferred: set[str]
) -> None:
    """Delete the plans done with: a plan stays as long as some of its packs are waiting."""
    for name, plan in old_plans:
        if not deferred.intersection(plan.packs):
            vault.storage.delete(name)
    if new_plan is not None and not deferred:
        vault.storage.delete(new_plan)


def _packs_of_new_snapshots(
    vault: Vault, seen: set[int], pack_refs: dict[str, IndexPack]
) -> set[str]:
    """Packs holding any chunk of a snapshot written since ``seen`` was listed."""
    new = [i for i in vault.snapshot_infos() if i.snapshot_id not in seen]
    if not new:
        return set()
    used: set[bytes] = set()
    for info in new:
        try:
            used |= _chunks_used(vault, info, vault.load_index())
        except (ChunkError, msgspec.DecodeError):
            return set(pack_refs)  # cannot tell what it uses: keep everything for now
    return _packs_holding(used, pack_refs)


def _repack(
    vault: Vault, writer: ChunkWriter, ref: IndexPack, keeps: Callable[[str, BlobRef], bool]
) -> int:
    """Copy a pack's live chunks (checked on the way) into new packs; returns chunks dropped."""
    data = vault.storage.get(pack_name(ref.id))
    dropped = 0
    for blob in ref.blobs:
        if not keeps(ref.id, blob):
            dropped += 1
            continue
        stored = data[blob.offset : blob.offset + blob.length]
        try:
            vault.decode_chunk(blob.id, stored, blob.compressed)
        except ChunkError:
            dropped += 1  # already damaged: copying it would only hide the damage
            continue
        writer.add_stored(blob, stored)
    return dropped
