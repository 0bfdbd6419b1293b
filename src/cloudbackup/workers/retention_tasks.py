"""Celery task: the retention pass (``domain.retention``), run by beat."""

from __future__ import annotations

from cloudbackup.domain.retention import enforce_retention
from cloudbackup.queue.names import RETENTION_TASK
from cloudbackup.workers.app import app
from cloudbackup.workers.tasks import database, dispatcher


@app.task(name=RETENTION_TASK, acks_late=True)
def run_retention() -> dict[str, int]:
    report = enforce_retention(database(), dispatcher())
    return {"started": len(report.started), "busy": report.busy}
