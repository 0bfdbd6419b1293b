"""The backup engine: pure file-and-vault algorithms, no database, HTTP or task queue.

``run_backup`` turns a configuration's inclusions and exclusions into a deduplicated snapshot in a
:class:`Vault` (content-defined chunks, compressed, optionally encrypted, packed, indexed);
``restore_snapshot`` rebuilds a snapshot's tree byte-identical; ``forget``, ``prune`` and
``verify`` maintain a vault. The contract is written down in ``docs/engine.md``.
"""

from cloudbackup.engine.backup import BLOCK_SIZE, Phase, run_backup
from cloudbackup.engine.backup_results import BackupProgress, BackupResult, StoringRate
from cloudbackup.engine.checkpoints import (
    CHECKPOINT_SECONDS,
    checkpoint_times,
    delete_checkpoint,
    list_checkpoints,
)
from cloudbackup.engine.crypto import KdfParams
from cloudbackup.engine.errors import (
    BLOB_CORRUPT,
    BLOB_MISSING,
    FILE_EXISTS,
    FILE_OR_FOLDER_MISSING,
    FILE_UNREADABLE,
    FILE_UNWRITABLE,
    INCLUSION_MISSING,
    INVALID_ENTRY,
    BackupStopped,
    ChunkError,
    FileError,
    NotEncrypted,
    PasswordRequired,
    PruneStopped,
    RestoreStopped,
    SnapshotNotFound,
    Stopped,
    VaultError,
    VaultKeyMissing,
    VaultLocked,
    VerifyStopped,
    WrongPassword,
)
from cloudbackup.engine.location import VaultLocation, open_vault, read_vault_password
from cloudbackup.engine.maintenance import ForgetResult, PruneProgress, PruneResult, forget, prune
from cloudbackup.engine.restore import RestoreProgress, RestoreResult, restore_snapshot
from cloudbackup.engine.selection import PathItem, Selection, SelectionItem
from cloudbackup.engine.snapshot import Entry, Manifest, SnapshotInfo
from cloudbackup.engine.storage import LocalStorage, ObjectInfo, S3Storage, Storage
from cloudbackup.engine.vault import Vault
from cloudbackup.engine.verify import (
    DamagedChunk,
    SnapshotFile,
    VerifyProgress,
    VerifyReport,
    verify,
)

__all__ = [
    "BLOB_CORRUPT",
    "BLOB_MISSING",
    "BLOCK_SIZE",
    "CHECKPOINT_SECONDS",
    "FILE_EXISTS",
    "FILE_OR_FOLDER_MISSING",
    "FILE_UNREADABLE",
    "FILE_UNWRITABLE",
    "INCLUSION_MISSING",
    "INVALID_ENTRY",
    "BackupProgress",
    "BackupResult",
    "BackupStopped",
    "ChunkError",
    "DamagedChunk",
    "Entry",
    "FileError",
    "ForgetResult",
    "KdfParams",
    "LocalStorage",
    "Manifest",
    "NotEncrypted",
    "ObjectInfo",
    "PasswordRequired",
    "PathItem",
    "Phase",
    "PruneProgress",
    "PruneResult",
    "PruneStopped",
    "RestoreProgress",
    "RestoreResult",
    "RestoreStopped",
    "S3Storage",
    "Selection",
    "SelectionItem",
    "SnapshotFile",
    "SnapshotInfo",
    "SnapshotNotFound",
    "Stopped",
    "Storage",
    "StoringRate",
    "Vault",
    "VaultError",
    "VaultKeyMissing",
    "VaultLocation",
    "VaultLocked",
    "VerifyProgress",
    "VerifyReport",
    "VerifyStopped",
    "WrongPassword",
    "checkpoint_times",
    "delete_checkpoint",
    "forget",
    "list_checkpoints",
    "open_vault",
    "prune",
    "read_vault_password",
    "restore_snapshot",
    "run_backup",
    "verify",
]
