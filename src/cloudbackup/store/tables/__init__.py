"""SQLModel tables, one module per aggregate; importing this package registers them all on
``SQLModel.metadata`` (Alembic's target)."""

from cloudbackup.store.tables.agent_presence import (
    AGENT_PRESENCE,
    PROJECT_ACTIVATIONS,
    AgentPresence,
    ProjectActivation,
)
from cloudbackup.store.tables.agents import AGENTS, CONFIGURATIONS, Agent, Configuration
from cloudbackup.store.tables.auth import API_TOKENS, ApiToken
from cloudbackup.store.tables.backups import BACKUP_ERRORS, BACKUPS, Backup, BackupError
from cloudbackup.store.tables.base import as_utc, table_of, utcnow
from cloudbackup.store.tables.browse import BROWSE_REQUESTS, BrowseRequest
from cloudbackup.store.tables.cleanups import CLEANUP_ERRORS, CLEANUPS, Cleanup, CleanupError
from cloudbackup.store.tables.events import EVENTS, Event
from cloudbackup.store.tables.idempotency import IDEMPOTENCY_KEYS, IdempotencyKey
from cloudbackup.store.tables.logfiles import LOGFILES, Logfile
from cloudbackup.store.tables.notifications import (
    MAIL_OUTBOX,
    NOTIFIER_CURSORS,
    MailMessage,
    NotifierCursor,
)
from cloudbackup.store.tables.operations import (
    AGENT_QUEUES,
    QUEUE_SETTINGS,
    RUN_SLOTS,
    WORKER_HEARTBEATS,
    AgentQueue,
    QueueSetting,
    RunSlot,
    WorkerHeartbeat,
)
from cloudbackup.store.tables.restores import RESTORE_ERRORS, RESTORES, Restore, RestoreError
from cloudbackup.store.tables.summaries import SUMMARY_SETTINGS, SummarySettings
from cloudbackup.store.tables.webhooks import (
    WEBHOOK_DELIVERIES,
    WEBHOOKS,
    Webhook,
    WebhookDelivery,
)

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
    "BROWSE_REQUESTS",
    "CLEANUPS",
    "CLEANUP_ERRORS",
    "RESTORES",
    "RESTORE_ERRORS",
    "BrowseRequest",
    "Cleanup",
    "CleanupError",
    "Restore",
    "RestoreError",
    "as_utc",
    "table_of",
    "utcnow",
    "AGENT_QUEUES",
    "QUEUE_SETTINGS",
    "RUN_SLOTS",
    "WORKER_HEARTBEATS",
    "AgentQueue",
    "QueueSetting",
    "RunSlot",
    "WorkerHeartbeat",
    "IDEMPOTENCY_KEYS",
    "IdempotencyKey",
    "AGENT_PRESENCE",
    "PROJECT_ACTIVATIONS",
    "AgentPresence",
    "ProjectActivation",
    "LOGFILES",
    "Logfile",
    "SUMMARY_SETTINGS",
    "SummarySettings",
    "MAIL_OUTBOX",
    "NOTIFIER_CURSORS",
    "MailMessage",
    "NotifierCursor",
    "WEBHOOKS",
    "WEBHOOK_DELIVERIES",
    "Webhook",
    "WebhookDelivery",
]
