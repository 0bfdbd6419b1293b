"""Domain layer: state machines and services. No HTTP or Celery imports here."""
