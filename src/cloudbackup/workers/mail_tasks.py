"""Celery task: queue the mail of ended backups and the summaries, then send what is due."""

from __future__ import annotations

from cloudbackup.domain import notifications, summary_mail
from cloudbackup.mail.smtp import SmtpMailer
from cloudbackup.queue.names import SEND_MAIL_TASK
from cloudbackup.workers.app import app, settings
from cloudbackup.workers.tasks import database


@app.task(name=SEND_MAIL_TASK, acks_late=True)
def send_mail() -> dict[str, int]:
    """Without CLOUDBACKUP_SMTP_URL nothing is queued or sent (``/health`` says so)."""
    if not settings.smtp_url:
        return {"queued": 0, "sent": 0, "retried": 0, "given_up": 0}
    db = database()
    queued = notifications.collect(db, settings) + summary_mail.queue_summaries(db, settings)
    mailer = SmtpMailer.from_url(settings.smtp_url, settings.mail_from)
    report = notifications.send_due(db, mailer)
    return {
        "queued": queued,
        "sent": report.sent,
        "retried": report.retried,
        "given_up": report.given_up,
    }
