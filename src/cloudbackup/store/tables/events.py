"""The event stream."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import json_field, table_of, utcnow


class Event(SQLModel, table=True):
    """One entry of the event stream (spec §10, §15). ``id`` is the global monotonic sequence.

    The tag columns say which lists an event belongs to (OQ-32); ``members`` holds the
    type-specific members exactly as the API renders them.
    """

    __tablename__ = "events"

    id: int | None = Field(default=None, primary_key=True)
    time: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    event: str = Field(max_length=64)
    project_id: str = Field(max_length=64, index=True)
    agent_id: str | None = Field(default=None, max_length=36, index=True)
    configuration_id: str | None = Field(default=None, max_length=36, index=True)
    backup_id: str | None = Field(default=None, max_length=36, index=True)
    restore_id: str | None = Field(default=None, max_length=36, index=True)
    cleanup_id: str | None = Field(default=None, max_length=36, index=True)
    drill_id: str | None = Field(default=None, max_length=36, index=True)  # an API extension
    members: dict[str, Any] | None = json_field()


EVENTS = table_of(Event)


def backup_event_row(
    event: str,
    *,
    project_id: str,
    agent_id: str,
    configuration_id: str,
    backup_id: str,
    request_id: str | None = None,
    extra: dict[str, Any] | None = None,
    time: datetime | None = None,
) -> dict[str, Any]:
    """The row of a backup event: tagged with every id it belongs to, its members as the API
    renders them. (``store.backup_starts`` builds the same members in SQL, tested equal.)"""
    members: dict[str, Any] = {
        "agent": {"id": agent_id},
        "configuration": {"id": configuration_id},
        "backup": {"id": backup_id},
    }
    if request_id is not None:
        members["request_id"] = request_id
    if extra:
        members.update(extra)
    return {
        "time": time or utcnow(),
        "event": event,
        "project_id": project_id,
        "agent_id": agent_id,
        "configuration_id": configuration_id,
        "backup_id": backup_id,
        "members": members,
    }
