"""Building event-stream entries (spec §10, §15) from the resources they describe."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from cloudbackup.store.repositories import EventRepository
from cloudbackup.store.tables import Backup, Cleanup, Drill, Restore
from cloudbackup.store.tables.events import backup_event_row


def record_backup_event(
    session: Session,
    backup: Backup,
    event: str,
    *,
    request_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Append a backup event tagged with its project, agent, configuration and backup."""
    row = backup_event_row(
        event,
        project_id=backup.project_id,
        agent_id=backup.agent_id,
        configuration_id=backup.configuration_id,
        backup_id=backup.id,
        request_id=request_id,
        extra=extra,
    )
    EventRepository(session).insert(**row)


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


def record_run_event(
    session: Session,
    run: Restore | Cleanup | Drill,
    event: str,
    *,
    request_id: str | None = None,
    vault_encrypted: bool | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Append a restore, cleanup or drill event: what it says of its run (:func:`_restore_event`,
    :func:`_cleanup_event`, :func:`_drill_event`; a restore's or cleanup's start request, given
    ``vault_encrypted``, says more), the request id and ``extra``, tagged with the run's ids."""
    if isinstance(run, Restore):
        members, tags = _restore_event(run, vault_encrypted)
    elif isinstance(run, Cleanup):
        members, tags = _cleanup_event(run, vault_encrypted)
    else:
        members, tags = _drill_event(run)
    if request_id is not None:
        members["request_id"] = request_id
    if extra:
        members.update(extra)
    EventRepository(session).insert(event=event, members=members, **tags)


record_restore_event = record_run_event
record_cleanup_event = record_run_event
record_drill_event = record_run_event

Tags = dict[str, str | None]


def _restore_event(restore: Restore, vault_encrypted: bool | None) -> tuple[dict[str, Any], Tags]:
    """A restore event (spec §15.2) tagged with its project, destination agent, the backup's
    configuration (so EV8 lists it) and the restore. The start request also describes the
    source vault, the snapshot and the whole request."""
    members: dict[str, Any] = {"agent": {"id": restore.destination_agent_id}}
    if vault_encrypted is not None:
        members["source_agent"] = {"vault": {"id": restore.vault_id, "encrypted": vault_encrypted}}
    members["configuration"] = {"id": restore.configuration_id}
    if vault_encrypted is not None:
        members["backup"] = {"snapshot_id": restore.snapshot_id}
        members["restore"] = {
            "id": restore.id,
            "destination_path": restore.destination_path,
            "overwrite_files": restore.overwrite_files,
            "inclusions": list(restore.inclusions or []),
            "exclusions": list(restore.exclusions or []),
        }
    else:
        members["restore"] = {"id": restore.id}
    tags: Tags = {
        "project_id": restore.project_id,
        "agent_id": restore.destination_agent_id,
        "configuration_id": restore.configuration_id,
        "restore_id": restore.id,
    }
    return members, tags


def _cleanup_event(cleanup: Cleanup, vault_encrypted: bool | None) -> tuple[dict[str, Any], Tags]:
    """A cleanup event (spec §15.3) tagged with its project, agent and cleanup; the start
    request also names the vault."""
    agent: dict[str, Any] = {"id": cleanup.agent_id}
    if vault_encrypted is not None:
        agent["vault"] = {"id": cleanup.vault_id, "encrypted": vault_encrypted}
    members: dict[str, Any] = {"agent": agent, "cleanup": {"id": cleanup.id}}
    tags: Tags = {
        "project_id": cleanup.project_id,
        "agent_id": cleanup.agent_id,
        "cleanup_id": cleanup.id,
    }
    return members, tags


def _drill_event(drill: Drill) -> tuple[dict[str, Any], Tags]:
    """A drill event, tagged with its project and drill only: the v2 event lists of the agent,
    the configuration and the backup stay as the spec has them."""
    members: dict[str, Any] = {
        "drill": {"id": drill.id},
        "backup": {"id": drill.backup_id, "snapshot_id": drill.snapshot_id},
        "configuration": {"id": drill.configuration_id},
    }
    return members, {"project_id": drill.project_id, "drill_id": drill.id}
