"""Scheduled restore drills (issue 14, an API extension): a configuration asks for a drill of
its latest restorable backup every ``every_hours``.

The schedule is a row of its own (``drill_schedules``), so the configuration's v2 body stays as
the spec has it. Its ``next_due_time`` is the one clock: a tick (beat, beside the backup schedule
tick) locks the due rows, starts each drill through :meth:`DrillService.record_start` (the rules
of ``POST .../drills``) and moves the due time on in the same transaction; the drills are
published after the commit, and one a broker lost is the sweeper's to re-publish. Occurrences
keep their phase: a weekly schedule set on a Monday stays on Mondays, and occurrences that passed
while no beat ran collapse into one drill. A configuration with a drill still open gets no second
one (that drill is this occurrence's proof); one without a restorable backup is looked at again
within the hour.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from cloudbackup.domain.agents import storable
from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.domain.drills import DrillService
from cloudbackup.domain.errors import DomainError, InvalidInput, NotFound
from cloudbackup.domain.run_states import DRILL_MACHINE
from cloudbackup.store import drill_schedules as store
from cloudbackup.store.db import Database
from cloudbackup.store.drill_results import DrillResult, last_drill_results
from cloudbackup.store.tables import Drill, DrillSchedule, as_utc, utcnow

log = logging.getLogger("cloudbackup.scheduler")

Clock = Callable[[], datetime]
MIN_EVERY_HOURS = 1
MAX_EVERY_HOURS = 8760  # a year
RETRY_WITHOUT_BACKUP = timedelta(hours=1)  # a configuration with nothing to drill yet
BATCH = 50  # schedules claimed per tick (about 8 statements each)
NOT_FOUND = "Configuration not found."
NO_SCHEDULE = "The configuration has no drill schedule."
FINAL_STATES = tuple(state.value for state in DRILL_MACHINE.final)


def every_hours_problems(value: Any) -> list[str]:
    """Why ``value`` is not a drill period (whole hours, 1 to 8760), or nothing."""
    if not isinstance(value, int) or isinstance(value, bool):
        kind = "null" if value is None else type(value).__name__  # never the value: any size
        return [f"every_hours must be an integer number of hours, not {kind}."]
    if not MIN_EVERY_HOURS <= value <= MAX_EVERY_HOURS:
        shown = value if abs(value) < 10**12 else "a larger number"
        return [f"every_hours must be from {MIN_EVERY_HOURS} to {MAX_EVERY_HOURS}, not {shown}."]
    return []


def next_due_after(due: datetime, every_hours: int, now: datetime) -> datetime:
    """The first occurrence after ``now`` of a schedule due at ``due`` (its phase kept)."""
    period = timedelta(hours=every_hours)
    if due > now:
        return due
    return due + ((now - due) // period + 1) * period


@dataclass(frozen=True, slots=True)
class ScheduleView:
    """A schedule as the API shows it, with the configuration's newest ended drill."""

    schedule: DrillSchedule
    last_drill: DrillResult | None


class DrillScheduleService:
    """PUT, GET and DELETE of one configuration's drill schedule."""

    def __init__(self, db: Database, clock: Clock = utcnow) -> None:
        self.db = db
        self.clock = clock

    def put(
        self, project_id: str, configuration_id: str, every_hours: Any
    ) -> tuple[ScheduleView, bool]:
        """Set the schedule; True when it is new. A new schedule is due at once (the first proof
        comes at the next tick); a changed period counts from the last drill it started."""
        problems = every_hours_problems(every_hours)
        if problems:
            raise InvalidInput("Validation failed.", problems)
        now = self.clock()
        with self.db.transaction() as session:
            self._live_configuration(session, project_id, configuration_id)
            row = store.schedule_of(session, project_id, configuration_id)
            if row is None:
                store.insert_schedule(
                    session,
                    {
                        "configuration_id": configuration_id,
                        "project_id": project_id,
                        "every_hours": every_hours,
                        "next_due_time": now,
                        "created_at": now,
                        "updated_at": now,
                    },
                )
            elif row.every_hours != every_hours:
                fired = row.last_fired_time
                due = now if fired is None else as_utc(fired) + timedelta(hours=every_hours)
                store.update_schedule(
                    session,
                    configuration_id,
                    {"every_hours": every_hours, "next_due_time": due, "updated_at": now},
                )
        return self.get(project_id, configuration_id), row is None

    def get(self, project_id: str, configuration_id: str) -> ScheduleView:
        with self.db.read() as session:
            self._live_configuration(session, project_id, configuration_id, lock=False)
            row = store.schedule_of(session, project_id, configuration_id)
        if row is None:
            raise NotFound(NO_SCHEDULE)
        last = last_drill_results(self.db, FINAL_STATES, configuration_id)
        return ScheduleView(row, last[0] if last else None)

    def delete(self, project_id: str, configuration_id: str) -> None:
        with self.db.transaction() as session:
            self._live_configuration(session, project_id, configuration_id)
            if not store.delete_schedule(session, configuration_id):
                raise NotFound(NO_SCHEDULE)

    @staticmethod
    def _live_configuration(
        session: Session, project_id: str, configuration_id: str, *, lock: bool = True
    ) -> None:
        """404 unless the project has the configuration, not deleted (locked for a write)."""
        row = (
            store.configuration_row(session, project_id, configuration_id, lock=lock)
            if storable(configuration_id)
            else None
        )
        if row is None or row.deleted:
            raise NotFound(NOT_FOUND)


@dataclass(slots=True)
class DrillTickReport:
    started: int = 0
    busy: int = 0  # a drill of the configuration was still open: no second one
    without_backup: int = 0  # nothing restorable to drill yet: looked at again within the hour
    forgotten: int = 0  # schedules of deleted configurations, removed
    refused: int = 0  # the drill service refused the start (logged; looked at again later)


def fire_due_drills(
    db: Database, dispatcher: Dispatcher, *, clock: Clock = utcnow, batch: int = BATCH
) -> DrillTickReport:
    """Start a drill for up to ``batch`` due schedules, oldest due first, then publish them
    (after the commit). One batch per tick: beat runs this beside the backup schedule tick, so a
    backlog of due drills (each a few writes) is worked off over the next ticks instead of
    holding scheduled backups back."""
    report = DrillTickReport()
    for drill in _fire_batch(db, dispatcher, clock(), batch, report):
        dispatcher.publish("drill", drill.id, agent_id=drill.agent_id)
    if report.started or report.refused:
        log.info(
            "drill tick: started %d, busy %d, without backup %d, refused %d",
            report.started,
            report.busy,
            report.without_backup,
            report.refused,
        )
    return report


def _fire_batch(
    db: Database, dispatcher: Dispatcher, now: datetime, batch: int, report: DrillTickReport
) -> list[Drill]:
    service = DrillService(db, dispatcher)
    started: list[Drill] = []
    with db.transaction() as session:
        due = store.due_schedules(session, now, batch)
        busy = store.configurations_with_open_drills(
            session, [s.configuration_id for s in due], FINAL_STATES
        )
        for schedule in due:
            config_id = schedule.configuration_id
            if schedule.configuration_deleted:
                store.delete_schedule(session, config_id)
                report.forgotten += 1
                continue
            following = next_due_after(schedule.next_due_time, schedule.every_hours, now)
            moves: dict[str, Any] = {"next_due_time": following}
            backup = (
                None if config_id in busy else store.latest_restorable_backup(session, config_id)
            )
            if config_id in busy:
                report.busy += 1
            elif backup is None:
                moves["next_due_time"] = min(following, now + RETRY_WITHOUT_BACKUP)
                report.without_backup += 1
            else:
                try:
                    with session.begin_nested():
                        drill = service.record_start(session, schedule.project_id, backup.id)
                except DomainError as exc:
                    log.warning("drill schedule of %s did not start: %s", config_id, exc.message)
                    moves["next_due_time"] = min(following, now + RETRY_WITHOUT_BACKUP)
                    report.refused += 1
                else:
                    moves |= {"last_fired_time": now, "last_drill_id": drill.id}
                    started.append(drill)
                    report.started += 1
            store.update_schedule(session, config_id, moves)
    return started
