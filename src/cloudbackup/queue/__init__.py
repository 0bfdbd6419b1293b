"""Celery and the broker: task and queue names, the app configuration, publishing, and queue
administration. The domain never imports this package; it is handed a ``Dispatcher``."""
