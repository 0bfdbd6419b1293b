"""Names every side agrees on: the Celery tasks, the message headers, and the queues.

Queues, all named after ``CLOUDBACKUP_BACKUP_QUEUE`` (``backups``):

* ``backups``: manual runs (``start_requested``), restores, re-publishes by the sweeper;
* ``backups.scheduled``: runs the scheduler fired, so a flood of them never sits in front of a
  manual run;
* ``backups.maintenance``: sweeps, schedule ticks, cleanups, verification;
* ``backups.webhooks``: webhook deliveries, short HTTP POSTs (a worker serves it first);
* ``backups.agent.<agent_id>`` and ``backups.agent.<agent_id>.scheduled``: the work of an agent
  pinned to its own host worker (``cloudbackup agent --agent-id``). Unpinned agents use the
  shared queues, which the plain ``celery -A cloudbackup.workers.app worker`` consumes, so one
  machine needs nothing more than web, worker and beat.

Tasks are addressed by name, so nothing here imports the worker's task modules.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from cloudbackup.domain.dispatch import JobKind

RUN_BACKUP_TASK = "cloudbackup.run_backup"
RUN_RESTORE_TASK = "cloudbackup.run_restore"
RUN_CLEANUP_TASK = "cloudbackup.run_cleanup"
RUN_BROWSE_TASK = "cloudbackup.run_browse"
UPLOAD_LOG_TASK = "cloudbackup.upload_log"
SWEEP_TASK = "cloudbackup.sweep"
SCHEDULE_TICK_TASK = "cloudbackup.schedule_tick"
SEND_MAIL_TASK = "cloudbackup.send_mail"
RETENTION_TASK = "cloudbackup.enforce_retention"
SEND_WEBHOOK_TASK = "cloudbackup.send_webhook"
SWEEP_WEBHOOKS_TASK = "cloudbackup.sweep_webhooks"
RUN_DRILL_TASK = "cloudbackup.run_drill"
TASK_OF: dict[JobKind, str] = {
    "backup": RUN_BACKUP_TASK,
    "restore": RUN_RESTORE_TASK,
    "cleanup": RUN_CLEANUP_TASK,
    "browse": RUN_BROWSE_TASK,
    "logfile": UPLOAD_LOG_TASK,
    "webhook": SEND_WEBHOOK_TASK,
    "drill": RUN_DRILL_TASK,
}
# Header carried by every message we publish: lets a worker forward a run to its agent's queue
# and lets `cloudbackup queues` tell the age of the oldest waiting message.
AGENT_HEADER = "cb_agent_id"
PUBLISHED_HEADER = "cb_published_at"
MAX_QUEUE_CONCURRENCY = 10_000

Lane = Literal["manual", "scheduled"]


@dataclass(frozen=True, slots=True)
class QueueNames:
    """Every queue name derives from one base, so test runs and deployments never collide."""

    base: str

    @property
    def manual(self) -> str:
        return self.base

    @property
    def scheduled(self) -> str:
        return f"{self.base}.scheduled"

    @property
    def maintenance(self) -> str:
        return f"{self.base}.maintenance"

    @property
    def webhooks(self) -> str:
        return f"{self.base}.webhooks"

    @property
    def agent_prefix(self) -> str:
        return f"{self.base}.agent."

    def shared(self) -> list[str]:
        """What a plain worker consumes, in the order Redis serves them (first = first)."""
        return [self.webhooks, self.maintenance, self.manual, self.scheduled]

    def lane(self, lane: Lane) -> str:
        return self.scheduled if lane == "scheduled" else self.manual

    def agent(self, agent_id: str, lane: Lane = "manual") -> str:
        queue = f"{self.agent_prefix}{agent_id}"
        return f"{queue}.scheduled" if lane == "scheduled" else queue

    def for_agent(self, agent_id: str) -> list[str]:
        return [self.agent(agent_id), self.agent(agent_id, "scheduled")]

    def agent_of(self, queue: str) -> str | None:
        if not queue.startswith(self.agent_prefix):
            return None
        rest = queue[len(self.agent_prefix) :]
        return rest.removesuffix(".scheduled") or None

    def lane_of(self, queue: str) -> Lane:
        return "scheduled" if queue.endswith(".scheduled") else "manual"

    def kind_of(self, queue: str) -> str:
        if self.agent_of(queue) is not None:
            return "agent"
        return {
            self.manual: "manual",
            self.scheduled: "scheduled",
            self.maintenance: "maintenance",
            self.webhooks: "webhooks",
        }.get(queue, "other")

    def ours(self, queue: str) -> bool:
        return queue in self.shared() or self.agent_of(queue) is not None


def task_headers(agent_id: str | None) -> dict[str, Any]:
    """The headers every message we publish carries (see ``AGENT_HEADER``)."""
    headers: dict[str, Any] = {PUBLISHED_HEADER: time.time()}
    if agent_id is not None:
        headers[AGENT_HEADER] = agent_id
    return headers
