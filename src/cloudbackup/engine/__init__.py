"""The backup engine: pure file-and-vault algorithms, no database, HTTP or task queue.

``run_backup`` turns a configuration's inclusions and exclusions into a deduplicated snapshot in a
:class:`Vault`; ``restore_snapshot`` rebuilds a snapshot's tree byte-identical.
"""

from cloudbackup.engine.backup import BackupProgress, BackupResult, Phase, run_backup
from cloudbackup.engine.errors import (
    BLOB_CORRUPT,
    BLOB_MISSING,
    FILE_EXISTS,
    FILE_OR_FOLDER_MISSING,
    FILE_UNREADABLE,
    FILE_UNWRITABLE,
    INVALID_ENTRY,
    BackupStopped,
    FileError,
    RestoreStopped,
    SnapshotNotFound,
    Stopped,
)
from cloudbackup.engine.restore import RestoreProgress, RestoreResult, restore_snapshot
from cloudbackup.engine.selection import PathItem, Selection, SelectionItem
from cloudbackup.engine.snapshot import Entry, Manifest
from cloudbackup.engine.vault import BLOCK_SIZE, BlobStore, PutResult, Vault

__all__ = [
    "BLOB_CORRUPT",
    "BLOB_MISSING",
    "BLOCK_SIZE",
    "FILE_EXISTS",
    "FILE_OR_FOLDER_MISSING",
    "FILE_UNREADABLE",
    "FILE_UNWRITABLE",
    "INVALID_ENTRY",
    "BackupProgress",
    "BackupResult",
    "BackupStopped",
    "BlobStore",
    "Entry",
    "FileError",
    "Manifest",
    "PathItem",
    "Phase",
    "PutResult",
    "RestoreProgress",
    "RestoreResult",
    "RestoreStopped",
    "Selection",
    "SelectionItem",
    "SnapshotNotFound",
    "Stopped",
    "Vault",
    "restore_snapshot",
    "run_backup",
]
