"""Lease locks of running backups and prunes, and the plans by which a prune announces deletions.

``locks/<kind>-<id>`` says a run of that kind is alive; its holder rewrites it every
``LOCK_REFRESH_SECONDS``, and one not rewritten for ``LOCK_STALE_SECONDS`` belongs to a dead
process. An exclusive run (a prune) also holds ``locks/<kind>`` (generation 0) or
``locks/<kind>.<n>``: the highest generation present is the holder. It is taken by creating
the next generation, which only one process can do (create-if-absent), so taking over a stale
holder is one conditional step: two pruners that both found it stale cannot both win.
``plans/<id>`` lists the packs a prune means to delete (see ``maintenance``).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from typing import Final

import msgspec

from cloudbackup.engine.errors import VaultLocked
from cloudbackup.engine.storage import Storage

#: A lock not refreshed for this long belongs to a dead process.
LOCK_STALE_SECONDS: Final = 30 * 60
LOCK_REFRESH_SECONDS: Final = 60.0
LOCK_PREFIX: Final = "locks/"
PLAN_PREFIX: Final = "plans/"


class LockInfo(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    id: str
    created_ns: int
    refreshed_ns: int
    host: str = ""
    pid: int = 0

    @property
    def stale(self) -> bool:
        return time.time_ns() - self.refreshed_ns > LOCK_STALE_SECONDS * 1_000_000_000


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """Packs a prune condemned; backups starting after it exists never reuse their chunks."""

    id: str
    created_ns: int
    packs: list[str]


def read_locks(storage: Storage) -> list[LockInfo]:
    """Every lock in ``storage``; ones released while listed or half-written are skipped."""
    locks: list[LockInfo] = []
    for info in storage.list(LOCK_PREFIX):
        try:
            locks.append(msgspec.msgpack.decode(storage.get(info.name), type=LockInfo))
        except (FileNotFoundError, msgspec.DecodeError):
            continue  # released while listed, or half-written by a crashed process
    return locks


def _generation_name(base: str, generation: int) -> str:
    return base if generation == 0 else f"{base}.{generation}"


def _highest_generation(storage: Storage, base: str) -> tuple[int, str | None]:
    """The highest generation of the exclusive lock ``base`` present, and its object's name
    (``(0, None)`` when nobody holds it)."""
    best: tuple[int, str | None] = (0, None)
    for info in storage.list(base):
        suffix = info.name[len(base) :]
        if suffix == "":
            generation = 0
        elif suffix.startswith(".") and suffix[1:].isdecimal():
            generation = int(suffix[1:])
        else:
            continue  # another kind's lock that shares the prefix (``prune-<id>``)
        if best[1] is None or generation > best[0]:
            best = (generation, info.name)
    return best


class VaultLock:
    """A lease lock object, refreshed by a background thread until released."""

    def __init__(self, storage: Storage, kind: str, *, exclusive: bool) -> None:
        self._storage = storage
        now = time.time_ns()
        self.info = LockInfo(
            kind=kind,
            id=secrets.token_hex(8),
            created_ns=now,
            refreshed_ns=now,
            host=socket.gethostname(),
            pid=os.getpid(),
        )
        self.name = f"{LOCK_PREFIX}{kind}-{self.info.id}"
        self._exclusive_name = f"{LOCK_PREFIX}{kind}" if exclusive else None
        if self._exclusive_name is not None:
            self._exclusive_name = self._take_exclusive(self._exclusive_name)
        self._storage.put(self.name, msgspec.msgpack.encode(self.info))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name=f"lock-{kind}", daemon=True)
        self._thread.start()

    def _take_exclusive(self, base: str) -> str:
        """Become the exclusive holder; the name of the generation this process created."""
        for _ in range(3):
            generation, holder_name = _highest_generation(self._storage, base)
            if holder_name is not None:
                try:
                    holder = msgspec.msgpack.decode(self._storage.get(holder_name), type=LockInfo)
                except FileNotFoundError:
                    continue  # released meanwhile: look again
                except msgspec.DecodeError:
                    holder = None  # half-written by a process that crashed: stale
                if holder is not None and not holder.stale:
                    raise VaultLocked(
                        f"a {holder.kind} of this vault is running (pid {holder.pid} on "
                        f"{holder.host or 'unknown host'}); try again when it is done"
                    )
                generation += 1  # take over the dead holder's lock with the next generation
            name = _generation_name(base, generation)
            if self._storage.create(name, msgspec.msgpack.encode(self.info)):
                if holder_name is not None:
                    self._storage.delete(holder_name)  # the dead holder's, now superseded
                return name
        raise VaultLocked("could not take the vault's lock; try again")

    def _refresh(self) -> None:
        while not self._stop.wait(LOCK_REFRESH_SECONDS):
            self.info = msgspec.structs.replace(self.info, refreshed_ns=time.time_ns())
            try:
                self._storage.put(self.name, msgspec.msgpack.encode(self.info))
                if self._exclusive_name is not None:
                    self._storage.put(self._exclusive_name, msgspec.msgpack.encode(self.info))
            except Exception:  # a store hiccup: the next refresh tries again
                continue

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._storage.delete(self.name)
        if self._exclusive_name is not None:
            self._storage.delete(self._exclusive_name)

    def __enter__(self) -> VaultLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
