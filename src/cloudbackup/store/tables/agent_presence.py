"""What agents told us about themselves through events: activation mode and last sign of life
(spec §10 EV1/EV3, §14.4, OQ-41). Kept apart from the event stream, which is purged."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import table_of, ts_field


class AgentPresence(SQLModel, table=True):
    """One row per agent that was activated (EV3) or posted a lifecycle event."""

    __tablename__ = "agent_presence"

    agent_id: str = Field(primary_key=True, foreign_key="agents.id", max_length=36)
    project_id: str = Field(max_length=64, index=True)
    mode: str | None = Field(default=None, max_length=16)  # idle | active | real_time
    mode_set_at: datetime | None = ts_field()
    last_seen_at: datetime | None = ts_field()  # startup, heartbeat or any agent-posted event
    shutdown_at: datetime | None = ts_field()  # the last `shutdown`; cleared by a later sign


class ProjectActivation(SQLModel, table=True):
    """The last project-wide activation (EV1): it applies to every agent of the project."""

    __tablename__ = "project_activations"

    project_id: str = Field(primary_key=True, max_length=64)
    mode: str = Field(max_length=16)
    mode_set_at: datetime | None = ts_field()


AGENT_PRESENCE = table_of(AgentPresence)
PROJECT_ACTIVATIONS = table_of(ProjectActivation)
