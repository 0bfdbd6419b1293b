"""SQLModel tables, one module per aggregate; importing this package registers them all on
``SQLModel.metadata`` (Alembic's target)."""

from cloudbackup.store.tables.agents import AGENTS, CONFIGURATIONS, Agent, Configuration
from cloudbackup.store.tables.auth import API_TOKENS, ApiToken
from cloudbackup.store.tables.backups import BACKUP_ERRORS, BACKUPS, Backup, BackupError
from cloudbackup.store.tables.base import as_utc, table_of, utcnow
from cloudbackup.store.tables.events import EVENTS, Event

__all__ = [
    "AGENTS",
    "API_TOKENS",
    "BACKUPS",
    "BACKUP_ERRORS",
    "CONFIGURATIONS",
    "EVENTS",
    "Agent",
    "ApiToken",
    "Backup",
    "BackupError",
    "Configuration",
    "Event",
    "as_utc",
    "table_of",
    "utcnow",
]
