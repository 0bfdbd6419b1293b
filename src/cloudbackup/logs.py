"""Logging set-up shared by the API, the workers and the CLI.

Every line is one JSON object (``CLOUDBACKUP_LOG_FORMAT=json``, the default) with ``time``,
``level``, ``logger``, ``message`` and the ``backup_id``, ``project_id`` and ``agent_id`` the line
is about (``null`` when it is about none). Code keeps using ``logging.getLogger(...)``; the ids
come from context variables that the API (per request) and the workers (per task) bind, so a
line never has to repeat them. ``console`` renders the same lines for people.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

CONTEXT_KEYS = ("backup_id", "project_id", "agent_id")
_SAFE_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
FORMATS = ("json", "console")


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler we install, so configuring twice replaces it instead of doubling."""


AGENT_LOG_MAX_BYTES = 4 * 1024 * 1024  # per agent and file; one older file is kept beside it


def agent_log_path(folder: Path, agent_id: str) -> Path:
    """Where a worker keeps the lines about ``agent_id`` (``<folder>/<agent_id>.jsonl``)."""
    return folder / f"{agent_id}.jsonl"


class AgentLogHandler(logging.Handler):
    """Appends each line about an agent (``agent_id`` bound) to that agent's own file, so a log
    upload (A12) sends an agent its lines and never another tenant's or the worker's own."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def emit(self, record: logging.LogRecord) -> None:
        agent_id = structlog.contextvars.get_contextvars().get("agent_id")
        if not isinstance(agent_id, str) or not _SAFE_ID.fullmatch(agent_id):
            return
        try:
            line = self.format(record).replace("\n", " ") + "\n"
            path = agent_log_path(self.folder, agent_id)
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if path.exists() and path.stat().st_size > AGENT_LOG_MAX_BYTES:
                path.replace(path.with_suffix(".jsonl.1"))
            # O_APPEND: the workers of one machine share the file, a line at a time.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except Exception:  # a log line must never break the work it describes
            self.handleError(record)


def _with_context_keys(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in CONTEXT_KEYS:
        event.setdefault(key, None)
    return event


def configure_logging(
    level: str = "INFO", fmt: str | None = None, agent_log_dir: Path | None = None
) -> None:
    """Send every logger's records to stderr as JSON (or console) lines at ``level``; with
    ``agent_log_dir`` (workers), also each agent's lines to its own file there, as JSON."""
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
    json_lines = structlog.processors.JSONRenderer(sort_keys=False)
    renderer = json_lines if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    formatter = _formatter(shared, renderer)
    handler = _OurHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler | AgentLogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    if agent_log_dir is not None:
        agent_lines = AgentLogHandler(agent_log_dir)
        agent_lines.setFormatter(_formatter(shared, json_lines))
        root.addHandler(agent_lines)
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


def _formatter(shared: list[Any], renderer: Any) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            renderer,
        ],
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
