"""Lease locks of running backups and prunes, and the plans by which a prune announces deletions.

``locks/<kind>-<id>`` says a run of that kind is alive; its holder rewrites it every
``LOCK_REFRESH_SECONDS``, and one not rewritten for ``LOCK_STALE_SECONDS`` belongs to a dead
process. An exclusive run (a prune) also creates ``locks/<kind>``, which only one holder at a time
can create; a stale one is taken over. ``plans/<id>`` lists the packs a prune means to delete
(see ``maintenance``).
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
_encoder = msgspec.msgpack.Encoder()


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
            self._take_exclusive(self._exclusive_name)
        self._storage.put(self.name, _encoder.encode(self.info))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name=f"lock-{kind}", daemon=True)
        self._thread.start()

    def _take_exclusive(self, name: str) -> None:
        for _ in range(2):
            if self._storage.create(name, _encoder.encode(self.info)):
                return
            try:
                holder = msgspec.msgpack.decode(self._storage.get(name), type=LockInfo)
            except FileNotFoundError:
                continue
            if not holder.stale:
                raise VaultLocked(
                    f"a {holder.kind} of this vault is running (pid {holder.pid} on "
                    f"{holder.host or 'unknown host'}); try again when it is done"
                )
            self._storage.delete(name)  # left by a dead process
        raise VaultLocked("could not take the vault's lock; try again")

    def _refresh(self) -> None:
        while not self._stop.wait(LOCK_REFRESH_SECONDS):
            self.info = msgspec.structs.replace(self.info, refreshed_ns=time.time_ns())
            try:
                self._storage.put(self.name, _encoder.encode(self.info))
                if self._exclusive_name is not None:
                    self._storage.put(self._exclusive_name, _encoder.encode(self.info))
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
