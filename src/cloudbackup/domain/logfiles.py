"""Log uploads of an agent: A12-A16 (spec §8.2, §14.5, §15.4, OQ-39).

A user asks (A12): the row starts ``requested`` and a ``logfile_upload`` event tells the agent
where to put the log. The agent reports ``started`` and ``completed`` (A15, only with its own
``X-Agent-Id``); ``completed`` is final. DELETE forgets the request.

Where logs are kept: the ``CloudBackupLogs`` container beside the vaults (``<vault root>/
CloudBackupLogs`` or that prefix of the bucket), named as the spec names them. A hosted agent's
log is the lines its workers wrote about it (``logs.AgentLogHandler``); a worker serving the
agent uploads them when asked (:func:`upload_hosted_log`). A remote agent PUTs its own log to the
logfile's link (:meth:`LogfileService.store`). The link then downloads it, for the project's users.
"""

from __future__ import annotations

import gzip
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.domain.agent_channel import AgentChannel, is_remote
from cloudbackup.domain.agents import live_agent, storable
from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from cloudbackup.domain.events import record_event
from cloudbackup.engine.location import VaultLocation, vault_storage
from cloudbackup.engine.storage import Storage
from cloudbackup.logs import agent_log_path
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database, rowcount
from cloudbackup.store.tables import LOGFILES, Logfile, utcnow

REQUESTED, STARTED, COMPLETED = "requested", "started", "completed"
# §14.5: target state -> the states it may be entered from (re-sending `started` is harmless).
ALLOWED_FROM = {STARTED: (REQUESTED, STARTED), COMPLETED: (REQUESTED, STARTED)}
STATE_EVENT = {
    REQUESTED: "logfile_upload",
    STARTED: "logfile_started",
    COMPLETED: "logfile_completed",
}
NOT_FOUND = "Logfile not found."
FINAL_MESSAGE = "The log upload is already completed; its state cannot change."
AGENT_ONLY = "Only the agent uploading the log may report its state, with its own token (A9)."


LOG_CONTAINER = "CloudBackupLogs"
MAX_LOG_BYTES = 2 * 1024 * 1024  # an upload, gzip: the API's body limit
NOT_UPLOADED = "The log has not been uploaded yet; its link works once the logfile is completed."
NOT_OPEN = "This log upload is completed; ask for a new one (POST .../logfiles)."
TOO_LARGE = f"A log upload is at most {MAX_LOG_BYTES} bytes (gzip)."
log = logging.getLogger("cloudbackup.logfiles")


def agent_log_folder(settings: Settings) -> Path:
    """Where a worker keeps each agent's lines (``<data_dir>/logs/agents``)."""
    return Path(settings.data_dir).resolve() / "logs" / "agents"


def log_store(settings: VaultLocation) -> Storage:
    """The container of uploaded logs, beside the vaults (same backend, same credentials)."""
    return vault_storage(settings, LOG_CONTAINER)


def object_name(agent_id: str, date: datetime) -> str:
    """Where the log goes: ``CloudBackupLogs/v2/{agent_id}/{date, ':' -> '-'}.gz`` (spec §8.2)."""
    stamp = date.strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(":", "-")
    return f"CloudBackupLogs/v2/{agent_id}/{stamp}.gz"


def _key(name: str) -> str:
    """An object name of :func:`object_name` as a key inside :func:`log_store`."""
    return name.removeprefix(f"{LOG_CONTAINER}/")


class LogfileService:
    def __init__(
        self,
        db: Database,
        dispatcher: Dispatcher | None = None,
        store: Callable[[], Storage] | None = None,
    ) -> None:
        self.db = db
        self.dispatcher = dispatcher
        self.store = store

    # -- A12 --------------------------------------------------------------------------------
    def request(
        self, project_id: str, agent_id: str, upload_href: Callable[[str, str], str]
    ) -> Logfile:
        """Record the request and tell the agent; ``upload_href(agent_id, object)`` makes the
        URL the event carries (the API knows URLs, the domain does not)."""
        now = utcnow()
        with self.db.transaction() as session:
            agent = live_agent(session, project_id, agent_id)
            row = Logfile(
                id=str(uuid.uuid4()),
                project_id=project_id,
                agent_id=agent.id,
                state=REQUESTED,
                date=now,
                updated_at=now,
            )
            session.add(row)
            href = upload_href(agent.id, object_name(agent.id, now))
            record_event(
                session,
                STATE_EVENT[REQUESTED],
                project_id=project_id,
                agent_id=agent.id,
                members={
                    "agent": {"id": agent.id},
                    "request_id": row.id,
                    "links": [{"href": href, "rel": "logfile"}],
                },
            )
        if self.dispatcher is not None:  # after the commit; the sweeper re-publishes a lost one
            self.dispatcher.publish("logfile", row.id, agent_id=row.agent_id)
        return row

    # -- the logfile's link -------------------------------------------------------------------
    def content(self, project_id: str, agent_id: str, name: str) -> bytes:
        """The uploaded log at ``name`` (its link), once its logfile is completed."""
        with self.db.read() as session:
            row = _logfile_at(session, project_id, agent_id, name)
        if row.state != COMPLETED or self.store is None:
            raise NotFound(NOT_UPLOADED)
        try:
            return self.store().get(_key(name))
        except FileNotFoundError:
            raise NotFound(NOT_UPLOADED) from None

    def store_upload(
        self, project_id: str, agent_id: str, name: str, data: bytes, reporter: str | None
    ) -> None:
        """A remote agent's PUT of its log to the link of an open logfile (its own token)."""
        with self.db.read() as session:
            row = _logfile_at(session, project_id, agent_id, name)
        if reporter != row.agent_id:
            raise Forbidden(AGENT_ONLY)
        if row.state == COMPLETED:
            raise Conflict(NOT_OPEN)
        if len(data) > MAX_LOG_BYTES:
            raise InvalidInput("Validation failed.", [TOO_LARGE])
        if self.store is None:
            raise NotFound(NOT_UPLOADED)
        self.store().put(_key(name), data)

    # -- A13 / A14 --------------------------------------------------------------------------
    def list(self, project_id: str, agent_id: str) -> list[Logfile]:
        with self.db.transaction() as session:
            live_agent(session, project_id, agent_id)
            return list(
                session.execute(
                    sa.select(Logfile)
                    .where(LOGFILES.c.agent_id == agent_id, LOGFILES.c.project_id == project_id)
                    .order_by(LOGFILES.c.seq)
                ).scalars()
            )

    def get(self, project_id: str, agent_id: str, logfile_id: str) -> Logfile:
        with self.db.transaction() as session:
            return _logfile(session, project_id, agent_id, logfile_id)

    # -- A15 --------------------------------------------------------------------------------
    def report(
        self,
        project_id: str,
        agent_id: str,
        logfile_id: str,
        state: str,
        agent_header: str | None,
    ) -> None:
        """The agent's progress: a compare-and-set on the state, then its event."""
        if state not in ALLOWED_FROM:
            raise InvalidInput(
                "Validation failed.", [f"/state must be 'started' or 'completed', not {state!r}."]
            )
        with self.db.transaction() as session:
            row = _logfile(session, project_id, agent_id, logfile_id)
            if agent_header != row.agent_id:
                raise Forbidden(AGENT_ONLY)
            _move(session, row, state)

    # -- A16 --------------------------------------------------------------------------------
    def delete(self, project_id: str, agent_id: str, logfile_id: str) -> None:
        with self.db.transaction() as session:
            row = _logfile(session, project_id, agent_id, logfile_id)
            session.execute(sa.delete(LOGFILES).where(LOGFILES.c.id == row.id))


def _move(session: Session, row: Logfile, state: str) -> None:
    """The one state change of a logfile: a compare-and-set, then the state's event."""
    now = utcnow()
    values: dict[str, Any] = {"state": state, "updated_at": now}
    values["started_time" if state == STARTED else "completed_time"] = now
    changed = session.execute(
        sa.update(LOGFILES)
        .where(LOGFILES.c.id == row.id, LOGFILES.c.state.in_(ALLOWED_FROM[state]))
        .values(**values)
    )
    if not rowcount(changed):
        raise Conflict(FINAL_MESSAGE)  # `completed` is final (§14.5)
    if state == row.state:
        return  # a repeated `started`: nothing new to announce
    record_event(
        session,
        STATE_EVENT[state],
        project_id=row.project_id,
        agent_id=row.agent_id,
        members={"agent": {"id": row.agent_id}, "request_id": row.id},
    )


def _logfile_at(session: Session, project_id: str, agent_id: str, name: str) -> Logfile:
    """The logfile of ``agent_id`` whose object is ``name`` (its link names it, spec §8.2)."""
    live_agent(session, project_id, agent_id)
    rows = session.execute(
        sa.select(Logfile).where(
            LOGFILES.c.agent_id == agent_id, LOGFILES.c.project_id == project_id
        )
    ).scalars()
    for row in rows:
        if object_name(row.agent_id, row.date) == name:
            return row
    raise NotFound(NOT_FOUND)


# -- the worker's side, for hosted agents -----------------------------------------------------


def upload_hosted_log(
    db: Database, settings: Settings, logfile_id: str, channel: AgentChannel | None = None
) -> str:
    """Upload what this machine's workers logged about the logfile's agent, then complete the
    logfile. Returns ``completed``, or ``noop`` when there is nothing left to do. A remote
    agent's log is on its host: the request goes to its channel (``delegated``), and the agent
    PUTs the log to the link and completes the logfile itself."""
    with db.read() as session:
        row = session.execute(
            sa.select(Logfile).where(LOGFILES.c.id == logfile_id)
        ).scalar_one_or_none()
    if row is None or row.state == COMPLETED:
        return "noop"
    if is_remote(db, row.agent_id):
        item = {
            "type": "logfile_upload",
            "id": row.id,
            "object": object_name(row.agent_id, row.date),
        }
        if channel is None or not channel.push(row.agent_id, item):
            log.warning("could not hand log upload %s to agent %s", row.id, row.agent_id)
            return "noop"  # still requested: the sweeper publishes it again
        return "delegated"
    with db.transaction() as session:
        _move(session, row, STARTED)
    data = gzip.compress(_agent_lines(agent_log_folder(settings), row.agent_id), mtime=0)
    log_store(settings).put(_key(object_name(row.agent_id, row.date)), data)
    with db.transaction() as session:
        try:
            _move(session, row, COMPLETED)
        except Conflict:
            return "noop"  # a duplicate delivery completed it first; the object is the same
    log.info("uploaded the log of agent %s (%d bytes gzip)", row.agent_id, len(data))
    return COMPLETED


def _agent_lines(folder: Path, agent_id: str) -> bytes:
    """The agent's older file, then its current one (each at most ``AGENT_LOG_MAX_BYTES``)."""
    current = agent_log_path(folder, agent_id)
    parts = []
    for path in (current.with_suffix(".jsonl.1"), current):
        try:
            parts.append(path.read_bytes())
        except FileNotFoundError:
            continue
    return b"".join(parts)


def republish_requested(
    db: Database, dispatcher: Dispatcher, older_than: timedelta, now: datetime | None = None
) -> int:
    """Publish again the log uploads still ``requested`` after ``older_than`` (a lost publish,
    a worker that died first); the upload itself is idempotent. Returns how many."""
    cutoff = (now or utcnow()) - older_than
    with db.read() as session:
        rows = session.execute(
            sa.select(LOGFILES.c.id, LOGFILES.c.agent_id)
            .where(LOGFILES.c.state == REQUESTED, LOGFILES.c.updated_at < cutoff)
            .limit(100)
        ).all()
    return sum(bool(dispatcher.publish("logfile", r.id, agent_id=r.agent_id)) for r in rows)


def _logfile(session: Session, project_id: str, agent_id: str, logfile_id: str) -> Logfile:
    live_agent(session, project_id, agent_id)
    if not storable(logfile_id):
        raise NotFound(NOT_FOUND)
    row = session.execute(
        sa.select(Logfile).where(
            LOGFILES.c.id == logfile_id,
            LOGFILES.c.agent_id == agent_id,
            LOGFILES.c.project_id == project_id,
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(NOT_FOUND)
    return row
