"""Celery tasks of webhooks: send one delivery, and publish the deliveries that came due."""

from __future__ import annotations

from cloudbackup import logs
from cloudbackup.domain.webhook_deliveries import HttpPoster, republish_due, send_delivery
from cloudbackup.queue.names import SEND_WEBHOOK_TASK, SWEEP_WEBHOOKS_TASK
from cloudbackup.workers.app import app, settings
from cloudbackup.workers.tasks import database, dispatcher

_poster = HttpPoster(settings.webhook_timeout_seconds)  # its client is made per process


@app.task(name=SEND_WEBHOOK_TASK, acks_late=True, reject_on_worker_lost=True)
def send_webhook(delivery_id: str) -> str:
    """One try of one delivery; a failure is scheduled in its row, not retried by Celery."""
    logs.clear()
    if not (delivery_id.isascii() and delivery_id.isdigit()):
        return "noop"
    return send_delivery(database(), int(delivery_id), _poster, settings)


@app.task(name=SWEEP_WEBHOOKS_TASK, acks_late=True)
def sweep_webhooks() -> int:
    """Publish due retries and lost deliveries (beat runs this in its own process)."""
    return republish_due(database(), dispatcher())
