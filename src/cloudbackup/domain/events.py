"""Building event-stream entries (spec §10, §15) from the resources they describe."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from cloudbackup.store.repositories import EventRepository
from cloudbackup.store.tables import Backup


def record_backup_event(
    session: Session,
    backup: Backup,
    event: str,
    *,
    request_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Append a backup event tagged with its project, agent, configuration and backup."""
    members: dict[str, Any] = {
        "agent": {"id": backup.agent_id},
        "configuration": {"id": backup.configuration_id},
        "backup": {"id": backup.id},
    }
    if request_id is not None:
        members["request_id"] = request_id
    if extra:
        members.update(extra)
    EventRepository(session).insert(
        event=event,
        project_id=backup.project_id,
        agent_id=backup.agent_id,
        configuration_id=backup.configuration_id,
        backup_id=backup.id,
        members=members,
    )


def record_event(
    session: Session,
    event: str,
    *,
    project_id: str,
    agent_id: str | None = None,
    configuration_id: str | None = None,
    members: dict[str, Any] | None = None,
) -> None:
    """Append any other event (agent and configuration events)."""
    EventRepository(session).insert(
        event=event,
        project_id=project_id,
        agent_id=agent_id,
        configuration_id=configuration_id,
        members=members or {},
    )
