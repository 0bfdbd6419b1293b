"""Log uploads of an agent: A12-A16 (spec §8.2, §14.5, §15.4, OQ-39).

A user asks (A12): the row starts ``requested`` and a ``logfile_upload`` event tells the agent
where to put the log. The agent reports ``started`` and ``completed`` (A15, only with its own
``X-Agent-Id``); ``completed`` is final. DELETE forgets the request.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.domain.agents import live_agent, storable
from cloudbackup.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from cloudbackup.domain.events import record_event
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


def object_name(agent_id: str, date: datetime) -> str:
    """Where the log goes: ``CloudBackupLogs/v2/{agent_id}/{date, ':' -> '-'}.gz`` (spec §8.2)."""
    stamp = date.strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(":", "-")
    return f"CloudBackupLogs/v2/{agent_id}/{stamp}.gz"


class LogfileService:
    def __init__(self, db: Database) -> None:
        self.db = db

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
        return row

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
                project_id=project_id,
                agent_id=row.agent_id,
                members={"agent": {"id": row.agent_id}, "request_id": row.id},
            )

    # -- A16 --------------------------------------------------------------------------------
    def delete(self, project_id: str, agent_id: str, logfile_id: str) -> None:
        with self.db.transaction() as session:
            row = _logfile(session, project_id, agent_id, logfile_id)
            session.execute(sa.delete(LOGFILES).where(LOGFILES.c.id == row.id))


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
