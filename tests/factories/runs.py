"""Finished runs for the fast suites: a real backup of a folder into the test's vault (the same
domain code a Celery worker calls), and a dispatcher that records what would be published."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cloudbackup.domain.backup_run import execute_backup
from cloudbackup.domain.backups import BackupService
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.tables import Agent, Backup, Configuration
from factories import rows


@dataclass
class Recorder:
    """A dispatcher that keeps (kind, id, agent) of every publish instead of sending it."""

    published: list[tuple[str, str, str | None]] = field(default_factory=list)

    def publish(self, kind: str, resource_id: str, *, agent_id: str | None = None) -> bool:
        self.published.append((kind, resource_id, agent_id))
        return True


@dataclass
class AsyncRecorder(Recorder):
    """The same for asyncio callers (``BackupStarter``)."""

    async def publish(  # type: ignore[override]
        self, kind: str, resource_id: str, *, agent_id: str | None = None
    ) -> bool:
        return Recorder.publish(self, kind, resource_id, agent_id=agent_id)


def backed_up(
    db: Database,
    settings: Settings,
    root: Path,
    *,
    agent: Agent | None = None,
    exclude: list[str] = (),  # type: ignore[assignment]
    **config: Any,
) -> tuple[Agent, Configuration, Backup]:
    """Back ``root`` up (minus the ``exclude`` folders) and return the agent, configuration and
    the completed, restorable backup row."""
    agent = agent or rows.agent(db)
    configuration = rows.configuration(
        db,
        agent,
        inclusions=[{"type": "folder", "path": f"{root}/"}],
        exclusions=[{"type": "folder", "path": f"{root}/{name}/"} for name in exclude],
        **config,
    )
    started = BackupService(db, Recorder()).start(
        agent.project_id, configuration.id, "start_requested", None
    )
    outcome = execute_backup(db, settings, started.id)
    assert outcome in ("completed", "completed_with_errors"), outcome
    with db.transaction() as session:
        backup = session.execute(sa.select(Backup).where(Backup.id == started.id)).scalar_one()
    assert backup.restorable and backup.snapshot_id is not None
    return agent, configuration, backup
