"""What operators decide and what workers report: queue settings, agent pins, run slots and
worker heartbeats. Kept in the database so it survives restarts of every process."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import json_field, table_of, ts_field, utcnow


class QueueSetting(SQLModel, table=True):
    """An operator's wishes for one queue: paused, and at most ``concurrency`` runs at once."""

    __tablename__ = "queue_settings"

    queue: str = Field(primary_key=True, max_length=200)
    paused: bool = False
    concurrency: int | None = None  # None: no cap beyond the workers' own pool sizes
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


class AgentQueue(SQLModel, table=True):
    """An agent pinned to its own queue (a host worker serves it); absent: the shared queues."""

    __tablename__ = "agent_queues"

    agent_id: str = Field(primary_key=True, max_length=36)
    pinned_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


class RunSlot(SQLModel, table=True):
    """A backup admitted to run (``running``) or held back by a limit or a pause (``waiting``).

    Slots of backups that reached a final state no longer count and are deleted by the tick.
    """

    __tablename__ = "run_slots"

    backup_id: str = Field(primary_key=True, max_length=36)
    project_id: str = Field(max_length=64, index=True)
    agent_id: str = Field(max_length=36, index=True)
    queue: str = Field(max_length=200, index=True)
    state: str = Field(max_length=16, index=True)  # running | waiting
    reason: str = Field(default="", max_length=200)  # why it waits
    since: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


class WorkerHeartbeat(SQLModel, table=True):
    """The last report of one Celery worker: its queues and what it runs right now."""

    __tablename__ = "worker_heartbeats"

    hostname: str = Field(primary_key=True, max_length=255)
    agent_id: str | None = Field(default=None, max_length=36)
    queues: list[str] | None = json_field()
    concurrency: int = 0
    running: list[dict[str, Any]] | None = json_field()  # [{"task", "id", "args"}]
    pid: int = 0
    started_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    last_seen: datetime | None = ts_field()


QUEUE_SETTINGS = table_of(QueueSetting)
AGENT_QUEUES = table_of(AgentQueue)
RUN_SLOTS = table_of(RunSlot)
WORKER_HEARTBEATS = table_of(WorkerHeartbeat)
