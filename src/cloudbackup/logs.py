"""Logging set-up shared by the API, the workers and the CLI.

Every line is one JSON object (``CLOUDBACKUP_LOG_FORMAT=json``, the default) with ``time``,
``level``, ``logger``, ``message`` and the ``backup_id``, ``project_id`` and ``agent_id`` the line
is about (``null`` when it is about none). Code keeps using ``logging.getLogger(...)``; the ids
come from context variables that the API (per request) and the workers (per task) bind, so a
line never has to repeat them. ``console`` renders the same lines for people.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog

CONTEXT_KEYS = ("backup_id", "project_id", "agent_id")
FORMATS = ("json", "console")


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler we install, so configuring twice replaces it instead of doubling."""


def _with_context_keys(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in CONTEXT_KEYS:
        event.setdefault(key, None)
    return event


def configure_logging(level: str = "INFO", fmt: str | None = None) -> None:
    """Send every logger's records to stderr as JSON (or console) lines at ``level``."""
    if fmt is None:
        from cloudbackup.settings import get_settings

        fmt = get_settings().log_format
    if fmt not in FORMATS:
        raise SystemExit(f"CLOUDBACKUP_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _with_context_keys,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            renderer,
        ],
    )
    handler = _OurHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # SQLAlchemy logs every statement at INFO when its logger is enabled: keep it to warnings
    # (a line per query is noise, and costs more than the query on the API's hot path).
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def bind(**ids: str | None) -> None:
    """Attach ids (``backup_id``, ``project_id``, ``agent_id``) to every later line here."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in ids.items() if v is not None})


def clear() -> None:
    structlog.contextvars.clear_contextvars()


@contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """Attach ids for the duration of a block (a request, a task)."""
    with structlog.contextvars.bound_contextvars(**{k: v for k, v in ids.items() if v is not None}):
        yield
