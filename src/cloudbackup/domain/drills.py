"""Restore drills (issue 14, an API extension): proof that a backup restores, and how fast.

A drill is a fourth kind of run on the one run model (``domain.runs``): its machine is
``run_states.DRILL_MACHINE``, its executor ``domain.drill_run``. This module holds the kind and
the API side: the start (``POST .../backups/{id}/drills``) and the list of one backup's drills;
reading one, its errors, its events and the stop are :class:`RunService`'s.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from cloudbackup.domain.agents import storable
from cloudbackup.domain.backups import ErrorReport
from cloudbackup.domain.errors import Conflict, NotFound
from cloudbackup.domain.events import record_drill_event
from cloudbackup.domain.run_states import DRILL_MACHINE, DrillState
from cloudbackup.domain.runs import RunKind, RunService, RunUpdate, backup_values, new_run_values
from cloudbackup.store.drill_repository import DrillRepository
from cloudbackup.store.repositories import BackupRepository, Page, SortDir
from cloudbackup.store.tables import Drill, DrillError

# A stop request (the only PATCH a drill takes: its own executor reports the rest).
DrillUpdate = RunUpdate[DrillState, ErrorReport]


DRILL_RUNS: RunKind[Drill, DrillError, DrillState] = RunKind(
    machine=DRILL_MACHINE,
    repository=DrillRepository,
    record_event=record_drill_event,
    not_the_agent="A drill's progress and result are reported by the service's own workers.",
)


class DrillService(RunService[Drill, DrillError, DrillState]):
    """Use cases of the drills resource: the start and a backup's list here, the rest shared."""

    kind = DRILL_RUNS

    def start(self, project_id: str, backup_id: str) -> Drill:
        """Record a new drill of a restorable backup (committed), then hand it to a worker."""
        return self.record_and_publish(lambda session: self._insert(session, project_id, backup_id))

    def record_start(self, session: Session, project_id: str, backup_id: str) -> Drill:
        """Record a new drill in the caller's transaction, by the same rules as :meth:`start`;
        the caller publishes it once committed (the drill scheduler, ``domain.drill_schedules``)."""
        return self._insert(session, project_id, backup_id)

    def page_of_backup(
        self,
        project_id: str,
        backup_id: str,
        *,
        marker: str | None,
        limit: int,
        sort_dir: SortDir,
    ) -> Page[Drill]:
        """A page of the backup's drills (404 for a backup the project does not have)."""
        with self.db.read() as session:
            self._backup(session, project_id, backup_id)
        return self.page(
            project_id, marker=marker, limit=limit, sort_dir=sort_dir, backup_id=backup_id
        )

    def _backup(self, session: Session, project_id: str, backup_id: str) -> Any:
        backup = (
            BackupRepository(session).get(backup_id, project_id) if storable(backup_id) else None
        )
        if backup is None:
            raise NotFound("Backup not found.")
        return backup

    def _insert(self, session: Session, project_id: str, backup_id: str) -> Drill:
        backup = self._backup(session, project_id, backup_id)
        if not backup.restorable or backup.snapshot_id is None:
            raise Conflict(f"Backup {backup.id} is {backup.state} and not restorable.")
        values = new_run_values(
            project_id,
            DrillState.START_REQUESTED.value,
            agent_id=backup.agent_id,
            **backup_values(backup),
        )
        return DRILL_RUNS.insert_start(session, values)
