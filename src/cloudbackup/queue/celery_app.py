"""The Celery app configuration shared by the API (publisher) and the workers (consumers):
at-least-once delivery guarded by compare-and-set starts."""

from __future__ import annotations

from celery import Celery
from kombu.entity import Queue

from cloudbackup.queue.names import (
    RETENTION_TASK,
    SCHEDULE_TICK_TASK,
    SEND_MAIL_TASK,
    SWEEP_TASK,
    SWEEP_WEBHOOKS_TASK,
    QueueNames,
)
from cloudbackup.settings import Settings


def make_celery(settings: Settings, *, name: str = "cloudbackup") -> Celery:
    """A Celery app configured for at-least-once delivery guarded by compare-and-set starts."""
    if not settings.broker_url:
        raise SystemExit(
            "CLOUDBACKUP_BROKER_URL is not set: point it at Redis (redis://host:6379/0), "
            "or run `cloudbackup dev`, which starts an embedded Redis."
        )
    names = QueueNames(settings.backup_queue)
    app = Celery(name, broker=settings.broker_url)
    app.conf.update(
        task_default_queue=names.manual,
        # A worker started without -Q consumes every shared queue (the Procfile's `worker:`).
        task_queues=[Queue(queue) for queue in names.shared()],  # type: ignore[no-untyped-call]
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A worker reserves no more than it runs: queue length stays an honest scaling signal
        # (KEDA) and a scaled-down worker holds no hidden backlog.
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={
            # Redis re-delivers an unacked task after the visibility timeout: keep it above the
            # longest backup so a healthy run is never delivered twice (field notes).
            "visibility_timeout": settings.broker_visibility_timeout
            or settings.max_backup_seconds + 600,
            # A shortened timeout is checked about as often (kombu's default: ~100 s).
            **(
                {"unacked_restore_interval": 1, "unacked_restore_throttle": 1}
                if settings.broker_visibility_timeout
                else {}
            ),
            # Serve the queues in the order given (webhooks, maintenance, manual, scheduled)
            # rather than round robin: a manual run never waits behind a flood of scheduled ones.
            "queue_order_strategy": "priority",
        },
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
        # SIGQUIT (or SIGTERM with REMAP_SIGTERM=SIGQUIT): running tasks get this long, then are
        # handed back to the broker; a pod's grace period must be longer (deploy/kubernetes).
        worker_soft_shutdown_timeout=settings.worker_soft_shutdown_seconds,
        worker_enable_soft_shutdown_on_idle=True,
        beat_schedule={
            "sweep": {
                "task": SWEEP_TASK,
                "schedule": max(5.0, settings.sweep_after_seconds / 3),
                "options": {"queue": names.maintenance},
            },
            "send-mail": {
                "task": SEND_MAIL_TASK,
                "schedule": settings.notify_interval_seconds,
                "options": {
                    "queue": names.maintenance,
                    "expires": settings.notify_interval_seconds,
                },
            },
            "retention": {
                "task": RETENTION_TASK,
                "schedule": settings.retention_interval_seconds,
                "options": {"queue": names.maintenance},
            },
            "webhook-sweep": {
                "task": SWEEP_WEBHOOKS_TASK,
                "schedule": settings.webhook_sweep_seconds,
                "options": {"queue": names.webhooks, "expires": settings.webhook_sweep_seconds},
            },
            "schedule-tick": {
                "task": SCHEDULE_TICK_TASK,
                "schedule": settings.schedule_tick_seconds,
                "options": {"queue": names.maintenance, "expires": settings.schedule_tick_seconds},
            },
        },
        beat_schedule_filename=f"{settings.data_dir}/celerybeat-schedule",
    )
    return app
