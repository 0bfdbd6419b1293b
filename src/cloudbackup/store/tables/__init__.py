"""SQLModel tables, one module per aggregate; importing this package registers them all on
``SQLModel.metadata`` (Alembic's target)."""

from cloudbackup.store.tables.agent_presence import (
    AGENT_PRESENCE,
    PROJECT_ACTIVATIONS,
    AgentPresence,
    ProjectActivation,
)
from cloudbackup.store.tables.agents import AGENTS, CONFIGURATIONS, Agent, Configuration
from cloudbackup.store.tables.anomalies import ANOMALIES, BACKUP_CHANGES, Anomaly, BackupChange
from cloudbackup.store.tables.auth import API_TOKENS, ApiToken
from cloudbackup.store.tables.backups import BACKUP_ERRORS, BACKUPS, Backup, BackupError
from cloudbackup.store.tables.base import as_utc, table_of, utcnow
from cloudbackup.store.tables.browse import BROWSE_REQUESTS, BrowseRequest
from cloudbackup.store.tables.cleanups import CLEANUP_ERRORS, CLEANUPS, Cleanup, CleanupError
from cloudbackup.store.tables.console import CONSOLE_SESSIONS, ConsoleSession
from cloudbackup.store.tables.drill_schedules import DRILL_SCHEDULES, DrillSchedule
from cloudbackup.store.tables.drills import DRILL_ERRORS, DRILLS, Drill, DrillError
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
    WEBHOOK_ATTEMPTS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_SUBSCRIPTIONS,
    WEBHOOKS,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)

__all__ = [
    "AGENTS",
    "AGENT_PRESENCE",
    "AGENT_QUEUES",
    "ANOMALIES",
    "API_TOKENS",
    "BACKUPS",
    "BACKUP_CHANGES",
    "BACKUP_ERRORS",
    "BROWSE_REQUESTS",
    "CLEANUPS",
    "CLEANUP_ERRORS",
    "CONFIGURATIONS",
    "CONSOLE_SESSIONS",
    "DRILLS",
    "DRILL_ERRORS",
    "DRILL_SCHEDULES",
    "EVENTS",
    "IDEMPOTENCY_KEYS",
    "LOGFILES",
    "MAIL_OUTBOX",
    "NOTIFIER_CURSORS",
    "PROJECT_ACTIVATIONS",
    "QUEUE_SETTINGS",
    "RESTORES",
    "RESTORE_ERRORS",
    "RUN_SLOTS",
    "SUMMARY_SETTINGS",
    "WEBHOOKS",
    "WEBHOOK_ATTEMPTS",
    "WEBHOOK_DELIVERIES",
    "WEBHOOK_SUBSCRIPTIONS",
    "WORKER_HEARTBEATS",
    "Agent",
    "AgentPresence",
    "AgentQueue",
    "Anomaly",
    "ApiToken",
    "Backup",
    "BackupChange",
    "BackupError",
    "BrowseRequest",
    "Cleanup",
    "CleanupError",
    "Configuration",
    "ConsoleSession",
    "Drill",
    "DrillError",
    "DrillSchedule",
    "Event",
    "IdempotencyKey",
    "Logfile",
    "MailMessage",
    "NotifierCursor",
    "ProjectActivation",
    "QueueSetting",
    "Restore",
    "RestoreError",
    "RunSlot",
    "SummarySettings",
    "Webhook",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookSubscription",
    "WorkerHeartbeat",
    "as_utc",
    "table_of",
    "utcnow",
]
