"""The event stream seen from projects, agents and configurations: EV1-EV4, EV8, agent status (A6)
and how long events are kept (spec §10, §14.4, §15.4, OQ-13, OQ-15, OQ-32, OQ-41).

Agents talk to us through ``POST /agents/{agent_id}/events``: lifecycle (``startup``,
``shutdown``), activation (``agent_activate`` + ``mode``, also a user call) and the agent-posted
types of §15.4 that have no endpoint of their own (``agent_heartbeat``, ``vault_db_download_*``).
Each becomes a stream event, and the last sign of life and the activation mode are kept in
``agent_presence`` (the stream itself is purged, see :func:`purge_expired_events`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cloudbackup.domain.activities import agent_is_busy, require_configuration
from cloudbackup.domain.agent_document import HEARTBEAT_TIMEOUT_SECONDS
from cloudbackup.domain.agents import live_agent, storable
from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.domain.errors import Forbidden, InvalidInput
from cloudbackup.domain.events import record_event
from cloudbackup.domain.run_states import BACKUP_MACHINE
from cloudbackup.store.db import Database, rowcount
from cloudbackup.store.repositories import (
    BackupRepository,
    EventRepository,
    Page,
    SortDir,
    keyset_page,
)
from cloudbackup.store.tables import (
    AGENT_PRESENCE,
    BACKUPS,
    EVENTS,
    PROJECT_ACTIVATIONS,
    AgentPresence,
    Event,
    ProjectActivation,
    as_utc,
    utcnow,
)
from cloudbackup.store.webhook_log import needed_by_deliveries

MODES = ("idle", "active", "real_time")
# An activation lapses back to idle after this long (spec EV1: "after some time").
ACTIVATION_SECONDS = 600
# Agent-posted types that only say "still here" (with the request they belong to, if any).
SIGN_OF_LIFE_EVENTS = ("agent_heartbeat",)
REQUEST_EVENTS = (
    "vault_db_download_in_progress",
    "vault_db_download_completed",
    "vault_db_download_failed",
)
LIFECYCLE_EVENTS = ("startup", "shutdown")
# EV3 `startup` re-publishes an agent's waiting runs: bounded, so that one tenant's agent cannot
# flood the shared queues by announcing its startup in a loop.
STARTUP_REPUBLISH_AFTER = timedelta(seconds=30)
STARTUP_REPUBLISH_LIMIT = 50
AGENT_EVENTS = ("agent_activate", *LIFECYCLE_EVENTS, *SIGN_OF_LIFE_EVENTS, *REQUEST_EVENTS)
MAX_REQUEST_ID = 64
PURGE_BATCH = 5_000
AGENT_HEADER_REQUIRED = "The X-Agent-Id header is required for events an agent posts."
AGENT_HEADER_MISMATCH = "X-Agent-Id is not the agent of this path; agents post their own events."
AGENT_TOKEN_ONLY = "An agent's events are posted with that agent's own token (A9)."


@dataclass(frozen=True, slots=True)
class AgentEvent:
    """An EV3 body; ``mode`` only for ``agent_activate``, ``request_id`` only for the
    ``vault_db_download_*`` types."""

    event: str
    mode: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class AgentStatus:
    busy: bool
    online: bool


def check_activation(event: str, mode: str | None) -> None:
    """EV1 (and EV3's activation): ``event`` must be ``agent_activate`` with a known mode."""
    problems = []
    if event != "agent_activate":
        problems.append(f"event must be 'agent_activate', not {event!r}.")
    if mode is None:
        problems.append("mode is required: idle, active or real_time.")
    elif mode not in MODES:
        problems.append(f"mode must be one of {', '.join(MODES)}, not {mode!r}.")
    if problems:
        raise InvalidInput("Validation failed.", problems)


def check_agent_event(body: AgentEvent) -> None:
    """EV3: the event types we accept (OQ-13, OQ-15) and the members each one takes."""
    if body.event == "agent_activate":
        check_activation(body.event, body.mode)
        if body.request_id is not None:
            raise InvalidInput("Validation failed.", ["request_id is not allowed here."])
        return
    problems = []
    if body.event not in AGENT_EVENTS:
        problems.append(f"event must be one of {', '.join(AGENT_EVENTS)}, not {body.event!r}.")
    if body.mode is not None:
        problems.append("mode is only allowed with event 'agent_activate'.")
    if body.event in REQUEST_EVENTS:
        if body.request_id is None:
            problems.append(f"request_id is required with event {body.event!r}.")
        elif not 0 < len(body.request_id) <= MAX_REQUEST_ID or not storable(body.request_id):
            problems.append(f"request_id must be 1 to {MAX_REQUEST_ID} characters.")
    elif body.request_id is not None:
        problems.append(f"request_id is not allowed with event {body.event!r}.")
    if problems:
        raise InvalidInput("Validation failed.", problems)


def effective_mode(
    presence: AgentPresence | None, project: ProjectActivation | None, now: datetime
) -> str:
    """The newest activation that has not lapsed (the agent's own or the project's), else idle."""
    candidates = [
        (as_utc(row.mode_set_at), row.mode)
        for row in (presence, project)
        if row is not None and row.mode is not None and row.mode_set_at is not None
    ]
    if not candidates:
        return "idle"
    set_at, mode = max(candidates)
    if now - set_at > timedelta(seconds=ACTIVATION_SECONDS):
        return "idle"
    return str(mode)


def seen_online(presence: AgentPresence | None, mode: str, now: datetime) -> bool:
    """A sign of life within the heartbeat timeout of the mode, and no shutdown since."""
    if presence is None or presence.last_seen_at is None:
        return False
    seen = as_utc(presence.last_seen_at)
    if presence.shutdown_at is not None and as_utc(presence.shutdown_at) >= seen:
        return False
    return now - seen <= timedelta(seconds=HEARTBEAT_TIMEOUT_SECONDS[mode])


class EventStreamService:
    """EV1-EV4, EV8 and A6."""

    def __init__(self, db: Database, dispatcher: Dispatcher | None = None) -> None:
        self.db = db
        self.dispatcher = dispatcher

    # -- EV1 --------------------------------------------------------------------------------
    def activate_project(self, project_id: str, event: str, mode: str | None) -> None:
        check_activation(event, mode)
        assert mode is not None
        now = utcnow()
        with self.db.transaction() as session:
            upsert(
                session,
                PROJECT_ACTIVATIONS,
                {"project_id": project_id, "mode": mode, "mode_set_at": now},
                key="project_id",
            )
            # Project-wide: no agent tag, no `agent` member (spec §15.4).
            record_event(
                session,
                "agent_activate",
                project_id=project_id,
                members={"mode": mode, "request_id": str(uuid.uuid4())},
            )

    # -- EV3 --------------------------------------------------------------------------------
    def post_agent_event(
        self,
        project_id: str,
        agent_id: str,
        body: AgentEvent,
        agent_header: str | None,
        reporter: str | None,
    ) -> None:
        """Record what an agent (or, for ``agent_activate``, a user) tells about one agent;
        ``reporter`` is the agent of the caller's token (an agent posts only its own events)."""
        check_agent_event(body)
        by_agent = body.event != "agent_activate"  # activation is the single-agent EV1 (OQ-13)
        if by_agent and not agent_header:
            raise InvalidInput("Validation failed.", [AGENT_HEADER_REQUIRED])
        now = utcnow()
        with self.db.transaction() as session:
            agent = live_agent(session, project_id, agent_id)
            if by_agent and agent_header != agent.id:
                raise Forbidden(AGENT_HEADER_MISMATCH)
            if by_agent and reporter != agent.id:
                raise Forbidden(AGENT_TOKEN_ONLY)
            presence: dict[str, Any] = {"agent_id": agent.id, "project_id": project_id}
            members: dict[str, Any] = {"agent": {"id": agent.id}}
            if body.event == "agent_activate":
                presence.update(mode=body.mode, mode_set_at=now)
                members = {"mode": body.mode, "request_id": str(uuid.uuid4())}
                stream_type = "agent_activate"
            elif body.event == "shutdown":
                presence.update(shutdown_at=now)
                members["request_id"] = str(uuid.uuid4())
                stream_type = "agent_shutdown"
            else:
                presence.update(last_seen_at=now, shutdown_at=None)
                if body.request_id is not None:
                    members["request_id"] = body.request_id
                stream_type = "agent_startup" if body.event == "startup" else body.event
            upsert(session, AGENT_PRESENCE, presence, key="agent_id")
            record_event(
                session, stream_type, project_id=project_id, agent_id=agent.id, members=members
            )
            pending = _waiting_backups(session, agent.id) if body.event == "startup" else []
        self._republish(pending, agent_id)

    def _republish(self, backup_ids: list[str], agent_id: str) -> None:
        """``startup``: make the agent's pending work visible again (spec EV3)."""
        if self.dispatcher is None or not backup_ids:
            return
        published = [
            backup_id
            for backup_id in backup_ids
            if self.dispatcher.publish("backup", backup_id, agent_id=agent_id)
        ]
        with self.db.transaction() as session:
            BackupRepository(session).mark_published(published)

    # -- EV2 / EV4 / EV8 --------------------------------------------------------------------
    def project_events(
        self, project_id: str, *, marker: int | None, limit: int, sort_dir: SortDir
    ) -> Page[Event]:
        with self.db.transaction() as session:
            return EventRepository(session).page(
                project_id, marker=marker, limit=limit, sort_dir=sort_dir
            )

    def agent_events(
        self, project_id: str, agent_id: str, *, marker: int | None, limit: int, sort_dir: SortDir
    ) -> Page[Event]:
        """The agent's own events plus project-wide activations, which apply to it too."""
        with self.db.transaction() as session:
            live_agent(session, project_id, agent_id)
            belongs = sa.and_(
                EVENTS.c.project_id == project_id,
                sa.or_(
                    EVENTS.c.agent_id == agent_id,
                    sa.and_(EVENTS.c.agent_id.is_(None), EVENTS.c.event == "agent_activate"),
                ),
            )
            return _page(session, belongs, marker, limit, sort_dir)

    def configuration_events(
        self,
        project_id: str,
        configuration_id: str,
        *,
        marker: int | None,
        limit: int,
        sort_dir: SortDir,
    ) -> Page[Event]:
        """Backup and restore events of the configuration (also once it is deleted)."""
        with self.db.transaction() as session:
            require_configuration(session, project_id, configuration_id)
            return EventRepository(session).page(
                project_id,
                marker=marker,
                limit=limit,
                sort_dir=sort_dir,
                configuration_id=configuration_id,
            )

    # -- A6 ---------------------------------------------------------------------------------
    def status(
        self, project_id: str, agent_id: str, workers_online: Callable[[], bool]
    ) -> AgentStatus:
        """busy: a backup/restore/cleanup of the agent is not final. online: the agent showed a
        sign of life within its mode's heartbeat timeout, or our workers (which act as every
        agent) are up (OQ-41); the workers are only asked when the agent itself is silent."""
        now = utcnow()
        with self.db.transaction() as session:
            agent = live_agent(session, project_id, agent_id)
            busy = agent_is_busy(session, project_id, agent.id)
            presence = session.get(AgentPresence, agent.id)
            project = session.get(ProjectActivation, project_id)
        mode = effective_mode(presence, project, now)
        online = seen_online(presence, mode, now) or workers_online()
        return AgentStatus(busy=busy, online=online)


# -- retention --------------------------------------------------------------------------------


def purge_expired_events(
    db: Database, retention: timedelta, now: datetime | None = None, *, batch: int = PURGE_BATCH
) -> int:
    """Delete events older than ``retention``; returns how many went.

    Event ids grow with time, so the oldest events are the lowest ids: each round reads the
    first ids (a primary-key range, cheap however large the table) and deletes the old ones
    among them, until it meets an event young enough to keep.
    """
    cutoff = (now or utcnow()) - retention
    removed = 0
    after = 0
    while True:
        with db.transaction() as session:
            rows = session.execute(
                sa.select(EVENTS.c.id, EVENTS.c.time)
                .where(EVENTS.c.id > after)
                .order_by(EVENTS.c.id)
                .limit(batch)
            ).all()
            old = [event_id for event_id, time in rows if as_utc(time) < cutoff]
            if old:
                # Events a pending webhook delivery still reads stay (store.webhook_log).
                deleted = session.execute(
                    sa.delete(EVENTS).where(EVENTS.c.id.in_(old), ~needed_by_deliveries())
                )
                removed += rowcount(deleted)
                after = old[-1]
        if len(old) < batch:
            return removed


# -- helpers ----------------------------------------------------------------------------------


def _page(
    session: Session, belongs: Any, marker: int | None, limit: int, sort_dir: SortDir
) -> Page[Event]:
    """``EventRepository.page`` with any filter (EV4 needs an OR of two tags)."""
    query = sa.select(Event).where(belongs)
    return keyset_page(session, query, EVENTS.c.id, marker, limit, sort_dir)


def _waiting_backups(session: Session, agent_id: str) -> list[str]:
    """Backups of the agent no worker has claimed yet and none was published for lately: an
    agent that announces its startup over and over re-publishes each run once per
    :data:`STARTUP_REPUBLISH_AFTER`, at most :data:`STARTUP_REPUBLISH_LIMIT` at a time."""
    published = BACKUPS.c.published_at
    rows = session.execute(
        sa.select(BACKUPS.c.id)
        .where(
            BACKUPS.c.agent_id == agent_id,
            BACKUPS.c.state.in_([str(s) for s in BACKUP_MACHINE.starts]),
            BACKUPS.c.heartbeat_at.is_(None),
            sa.or_(published.is_(None), published < utcnow() - STARTUP_REPUBLISH_AFTER),
        )
        .order_by(BACKUPS.c.seq)
        .limit(STARTUP_REPUBLISH_LIMIT)
    )
    return [row[0] for row in rows]


def upsert(session: Session, table: sa.Table, values: dict[str, Any], *, key: str) -> None:
    """Insert the row or update it in place, race-free (``ON CONFLICT``, SQLite and PostgreSQL)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    changes = {name: value for name, value in values.items() if name != key}
    session.execute(insert.values(values).on_conflict_do_update(index_elements=[key], set_=changes))
