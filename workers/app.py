"""The Celery application of the workers (`celery -A workers.app worker`)."""

from __future__ import annotations

from cloudbackup.logs import configure_logging
from cloudbackup.queueing import make_celery
from cloudbackup.settings import get_settings

settings = get_settings()
configure_logging(settings.log_level)
app = make_celery(settings)
app.conf.include = ["workers.tasks"]
