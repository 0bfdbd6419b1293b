"""The Celery side of dispatching: one app configuration shared by the API (publisher) and the
workers (consumers), and the ``Dispatcher`` the services publish through after their commit.

Tasks are addressed by name, so nothing here imports the worker's task modules.
"""

from __future__ import annotations

import logging

from celery import Celery

from cloudbackup.domain.dispatch import JobKind
from cloudbackup.settings import Settings

log = logging.getLogger("cloudbackup.queue")

RUN_BACKUP_TASK = "cloudbackup.run_backup"
RUN_RESTORE_TASK = "cloudbackup.run_restore"
RUN_CLEANUP_TASK = "cloudbackup.run_cleanup"
SWEEP_TASK = "cloudbackup.sweep"
TASK_OF: dict[JobKind, str] = {
    "backup": RUN_BACKUP_TASK,
    "restore": RUN_RESTORE_TASK,
    "cleanup": RUN_CLEANUP_TASK,
}


def make_celery(settings: Settings, *, name: str = "cloudbackup") -> Celery:
    """A Celery app configured for at-least-once delivery guarded by compare-and-set starts."""
    if not settings.broker_url:
        raise SystemExit(
            "CLOUDBACKUP_BROKER_URL is not set: point it at Redis (redis://host:6379/0), "
            "or run `cloudbackup dev`, which starts an embedded Redis."
        )
    app = Celery(name, broker=settings.broker_url)
    app.conf.update(
        task_default_queue=settings.backup_queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        # Redis re-delivers an unacked task after the visibility timeout: keep it above the
        # longest backup so a healthy run is never delivered twice (field notes).
        broker_transport_options={"visibility_timeout": settings.max_backup_seconds + 600},
        task_soft_time_limit=settings.max_backup_seconds,
        task_time_limit=settings.max_backup_seconds + 300,
        broker_connection_timeout=settings.broker_publish_timeout,
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        beat_schedule={
            "sweep": {"task": SWEEP_TASK, "schedule": max(5.0, settings.sweep_after_seconds / 3)},
        },
        beat_schedule_filename=f"{settings.data_dir}/celerybeat-schedule",
    )
    return app


class CeleryDispatcher:
    """Publishes runs to the broker; a failed publish is logged and left to the sweeper."""

    def __init__(self, app: Celery, queue: str) -> None:
        self.app = app
        self.queue = queue

    @classmethod
    def from_settings(cls, settings: Settings) -> CeleryDispatcher:
        return cls(make_celery(settings), settings.backup_queue)

    def publish(self, kind: JobKind, resource_id: str, *, agent_id: str | None = None) -> bool:
        try:
            self.app.send_task(TASK_OF[kind], args=[resource_id], queue=self.queue)
        except Exception as exc:  # the broker is down: the row is committed, the sweeper retries
            log.warning(
                "could not publish %s %s, the sweeper will retry: %s", kind, resource_id, exc
            )
            return False
        return True
