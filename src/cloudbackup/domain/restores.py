"""Finding what to restore: a restorable backup's vault and snapshot."""

from __future__ import annotations

from dataclasses import dataclass

from cloudbackup.domain.errors import Conflict, NotFound
from cloudbackup.engine import Vault
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import BackupRepository


@dataclass(frozen=True, slots=True)
class RestoreTarget:
    vault: Vault
    snapshot_id: int


def locate_snapshot(
    db: Database, settings: Settings, backup_id: str, project_id: str | None = None
) -> RestoreTarget:
    with db.transaction() as session:
        backup = BackupRepository(session).get(backup_id, project_id)
    if backup is None:
        raise NotFound(f"Backup {backup_id} not found.")
    if not backup.restorable or backup.snapshot_id is None:
        raise Conflict(f"Backup {backup_id} is {backup.state} and not restorable.")
    return RestoreTarget(Vault(settings.resolved_vault_path / backup.vault_id), backup.snapshot_id)
