"""The agent's own log: a file in its state folder (``agent.log``, 0600, rotated once at
:data:`LOG_MAX_BYTES`), which a log upload (A12) gzips and PUTs to the logfile's link, reporting
A15 ``started`` then ``completed``."""

from __future__ import annotations

import gzip
import json
import logging
import logging.handlers
import os
from pathlib import Path
from typing import Any

from cloudbackup.agent.reports import JSON_PATCH, replace
from cloudbackup.agent.session import AgentSession, ApiRefused

LOG_NAME = "agent.log"
LOG_MAX_BYTES = 4 * 1024 * 1024
# The API takes at most 2 MiB of gzip per upload: the newest lines that fit are sent.
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

log = logging.getLogger("cloudbackup.agent")


def log_path(folder: Path) -> Path:
    return folder / LOG_NAME


def log_to_file(folder: Path) -> logging.Handler:
    """Add the state folder's log file to the ``cloudbackup`` loggers; the handler, to remove
    when the agent stops."""
    path = log_path(folder)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # private from the start
    os.close(fd)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=LOG_MAX_BYTES, backupCount=1, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("cloudbackup")
    root.addHandler(handler)
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    return handler


def gzipped_log(folder: Path, limit: int = MAX_UPLOAD_BYTES) -> bytes:
    """The older file, then the current one, gzipped; the newest part when it is too big."""
    current = log_path(folder)
    lines = b""
    for path in (current.with_name(f"{LOG_NAME}.1"), current):
        try:
            lines += path.read_bytes()
        except FileNotFoundError:
            continue
    data = gzip.compress(lines, mtime=0)
    while len(data) > limit and lines:
        lines = lines[len(lines) // 4 :]  # drop the oldest quarter
        cut = lines.find(b"\n")
        lines = lines[cut + 1 :] if cut >= 0 else lines
        data = gzip.compress(lines, mtime=0)
    return data


def upload_log(session: AgentSession, folder: Path, item: dict[str, Any]) -> str:
    """Serve one ``logfile_upload`` channel item; ``completed``, or ``noop`` when the logfile
    was completed (or deleted) meanwhile."""
    report = session.agent_path("logfiles", str(item["id"]))
    headers = {"Content-Type": JSON_PATCH, "X-Agent-Id": session.identity.agent_id}

    def move(state: str) -> bool:
        body = json.dumps([replace("/state", state)])
        response = session.request("PATCH", report, content=body, headers=headers)
        if response.status_code in (404, 409):
            return False
        if not response.is_success:
            raise ApiRefused(response)
        return True

    if not move("started"):
        return "noop"
    data = gzipped_log(folder)
    link = session.agent_path("vault", str(item["object"]))
    response = session.request(
        "PUT", link, content=data, headers={"Content-Type": "application/gzip"}
    )
    if response.status_code in (404, 409):
        return "noop"
    if not response.is_success:
        raise ApiRefused(response)
    if not move("completed"):
        return "noop"
    log.info("uploaded the agent's log (%d bytes gzip)", len(data))
    return "completed"
