"""A remote agent's vault, object by object, through the API (an extension of the v2 API).

The agent runs the engine on its host and stores what it seals (packs, index files, snapshot
objects, locks) here: the server writes the bytes to the agent's own vault location, the same
local folder or S3 prefix a hosted worker would use, and never holds the vault's password.
Names must have one of the shapes the engine writes, and only the agent's own token reaches
its vault (``agent_channel.check_own_agent``), except that the destination agent of an open
restore from it may read it (``cross_agent_restores.open_restore_source``).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

from cloudbackup.domain.agent_channel import NOT_THIS_AGENT, check_own_agent
from cloudbackup.domain.cross_agent_restores import open_restore_source
from cloudbackup.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from cloudbackup.engine import ObjectInfo, Storage
from cloudbackup.engine.location import vault_storage
from cloudbackup.engine.locks import LOCK_PREFIX, read_locks
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.tables import Agent

# A pack is at most PACK_TARGET (16 MiB) plus one chunk (at most 8 MiB) and its header.
MAX_OBJECT_BYTES = 64 * 1024 * 1024
MAX_LISTED = 200_000
# How long an agent's vault location is remembered (a deleted agent's token works that long).
VAULT_CACHE_SECONDS = 5.0
# The names the engine writes (engine/vault.py's layout), and nothing else.
_OBJECT_NAME = re.compile(
    r"config"
    r"|packs/[0-9a-f]{2}/[0-9a-f]{64}"
    r"|index/[0-9a-f]{32}"
    r"|snapshots/[1-9][0-9]{0,17}\.(lock|manifest)"
    r"|locks/[a-z]{1,32}(-[0-9a-f]{16}|\.[0-9]{1,9})?"
    r"|plans/[0-9a-f]{16}"
    r"|checkpoints/[A-Za-z0-9_-]{1,128}/[0-9a-f]{12}-[0-9]{8,18}"
)
# A prefix is the start of such a name (the engine also lists a whole name to see if it exists).
_PREFIX = re.compile(r"([a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*/?)?")
MAX_PREFIX = 200
NOT_FOUND = "No such vault object."
# The engine deletes data only in a cleanup (forget, prune), under one of these locks.
MAINTENANCE_LOCKS = frozenset({"cleanup", "prune"})
# A completed backup deletes the checkpoints it resumed from and its own (engine.checkpoints)
# under its backup lock: losing a checkpoint costs a re-read, never data (prune then collects
# what only it listed).
CHECKPOINT_PREFIX = "checkpoints/"
CHECKPOINT_LOCKS = MAINTENANCE_LOCKS | {"backup"}
NOT_LOCKED = (
    "Vault objects other than locks are deleted only under the vault's cleanup or prune lock "
    "(locks/cleanup, locks/prune), checkpoints also under a backup lock; take it first."
)


def check_object_name(name: str) -> str:
    if not _OBJECT_NAME.fullmatch(name):
        raise InvalidInput("Validation failed.", [f"{name[:100]!r} is not a vault object name."])
    return name


def check_prefix(prefix: str) -> str:
    if len(prefix) > MAX_PREFIX or ".." in prefix or not _PREFIX.fullmatch(prefix):
        raise InvalidInput("Validation failed.", [f"{prefix[:100]!r} is not a listable prefix."])
    return prefix


class VaultObjectService:
    """Objects of the caller's own vault: put (or put-if-absent), get (whole or a range), list
    by prefix, delete."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        # (project, agent) -> (until, storage): an agent's vault, looked up once per few
        # seconds rather than on each of the many object requests of a run.
        self._vaults: dict[tuple[str, str], tuple[float, Storage]] = {}
        self._lock = threading.Lock()

    def _storage(
        self, project_id: str, agent_id: str, caller: str | None, *, reading: bool = False
    ) -> Storage:
        """The vault of ``agent_id`` for its own token; for another agent's token only to read,
        while a restore onto it from this vault is open (checked on every request)."""
        source: Agent | None = None
        if caller != agent_id:
            if not reading or caller is None:
                raise Forbidden(NOT_THIS_AGENT)
            source = open_restore_source(self.db, project_id, agent_id, caller)
        key = (project_id, agent_id)
        cached = self._vaults.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        agent = source or check_own_agent(self.db, project_id, agent_id, caller)
        storage = vault_storage(self.settings, agent.vault_id)
        with self._lock:
            if len(self._vaults) > 10_000:
                self._vaults.clear()
            self._vaults[key] = (time.monotonic() + VAULT_CACHE_SECONDS, storage)
        return storage

    def put(
        self,
        project_id: str,
        agent_id: str,
        caller: str | None,
        name: str,
        data: bytes,
        *,
        if_absent: bool,
    ) -> bool:
        """Write the object; with ``if_absent``, only when no object has that name (False
        then, and nothing written)."""
        storage = self._storage(project_id, agent_id, caller)
        check_object_name(name)
        if len(data) > MAX_OBJECT_BYTES:
            raise InvalidInput(
                "Validation failed.", [f"An object may be at most {MAX_OBJECT_BYTES} bytes."]
            )
        if if_absent:
            return storage.create(name, data)
        storage.put(name, data)
        return True

    def get(
        self,
        project_id: str,
        agent_id: str,
        caller: str | None,
        name: str,
        byte_range: tuple[int, int] | None = None,
    ) -> bytes:
        """The object, or ``byte_range`` (offset, length) of it; 404 when there is none."""
        storage = self._storage(project_id, agent_id, caller, reading=True)
        check_object_name(name)
        try:
            if byte_range is None:
                return storage.get(name)
            return storage.get_range(name, *byte_range)
        except FileNotFoundError:
            raise NotFound(NOT_FOUND) from None

    def size(self, project_id: str, agent_id: str, caller: str | None, name: str) -> int:
        """The object's size (HEAD); 404 when there is none."""
        storage = self._storage(project_id, agent_id, caller, reading=True)
        check_object_name(name)
        for info in storage.list(name):
            if info.name == name:
                return info.size
        raise NotFound(NOT_FOUND)

    def list(
        self, project_id: str, agent_id: str, caller: str | None, prefix: str
    ) -> Iterator[ObjectInfo]:
        storage = self._storage(project_id, agent_id, caller, reading=True)
        check_prefix(prefix)
        for count, info in enumerate(storage.list(prefix)):
            if count >= MAX_LISTED:
                break
            if _OBJECT_NAME.fullmatch(info.name):  # the store's own files (tmp/) stay hidden
                yield info

    def delete(self, project_id: str, agent_id: str, caller: str | None, name: str) -> None:
        storage = self._storage(project_id, agent_id, caller)
        check_object_name(name)
        allowed = CHECKPOINT_LOCKS if name.startswith(CHECKPOINT_PREFIX) else MAINTENANCE_LOCKS
        if not name.startswith(LOCK_PREFIX) and not any(
            lock.kind in allowed and not lock.stale for lock in read_locks(storage)
        ):
            # A guard against deleting data outside a cleanup (a confused or half-updated
            # host), not against the host itself: its vault is its own.
            raise Conflict(NOT_LOCKED)
        storage.delete(name)
