"""When scheduled drills start (a fake clock, in-process on SQLite): a due schedule starts one
drill of the configuration's latest restorable backup through the drill service and moves its
due time on by the period, keeping its phase; never a second open drill per configuration; a
configuration with nothing restorable is looked at again within the hour; the due time lives in
the database, so another process (a restarted beat) carries on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from cloudbackup.domain.drill_run import execute_drill
from cloudbackup.domain.drill_schedules import (
    DrillScheduleService,
    fire_due_drills,
    next_due_after,
)
from cloudbackup.store.db import Database
from cloudbackup.store.tables import Drill, DrillSchedule, as_utc
from factories import rows
from factories.api import PROJECT, headers, token
from factories.runs import Recorder, backed_up
from factories.trees import make_tree

T0 = datetime(2027, 3, 1, 2, 0, 0, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)
WEEK = timedelta(days=7)


@pytest.fixture
def config(db):
    return rows.configuration(db, rows.agent(db))


def _schedule(db, config, every_hours=168, at=T0):
    DrillScheduleService(db, clock=lambda: at).put(PROJECT, config.id, every_hours)


def _tick(db, at, dispatcher=None):
    return fire_due_drills(db, dispatcher or Recorder(), clock=lambda: at)


def _row(db, config) -> DrillSchedule:
    with db.read() as session:
        row = session.get(DrillSchedule, config.id)
    assert row is not None
    return row


def _drills(db, config) -> list[Drill]:
    with db.read() as session:
        query = sa.select(Drill).where(Drill.configuration_id == config.id).order_by(Drill.seq)
        return list(session.execute(query).scalars())


def _end(db, drill, state="passed"):
    with db.transaction() as session:
        session.execute(
            sa.update(Drill).where(Drill.id == drill.id).values(state=state, ended_time=T0)
        )


def test_the_next_occurrence_keeps_the_phase_and_collapses_missed_ones():
    assert next_due_after(T0, 168, T0 - HOUR) == T0  # not due yet: unchanged
    assert next_due_after(T0, 168, T0) == T0 + WEEK
    assert next_due_after(T0, 168, T0 + 3 * WEEK + HOUR) == T0 + 4 * WEEK
    assert next_due_after(T0, 24, T0 + timedelta(hours=23, minutes=59)) == T0 + timedelta(days=1)


def test_a_due_schedule_drills_the_latest_restorable_backup_and_moves_on(db, config):
    old = rows.backup(db, config.id, restorable=True, snapshot_id=1, created_at=T0 - 2 * HOUR)
    latest = rows.backup(db, config.id, restorable=True, snapshot_id=2, created_at=T0 - HOUR)
    rows.backup(db, config.id, state="failed", restorable=False, created_at=T0)  # not restorable
    _schedule(db, config)
    assert as_utc(_row(db, config).next_due_time) == T0  # a new schedule is due at once

    dispatcher = Recorder()
    report = _tick(db, T0 + timedelta(seconds=3), dispatcher)
    [drill] = _drills(db, config)
    assert report.started == 1 and drill.backup_id == latest.id != old.id
    assert drill.state == "start_requested" and drill.snapshot_id == 2
    assert dispatcher.published == [("drill", drill.id, config.agent_id)]
    row = _row(db, config)
    assert as_utc(row.next_due_time) == T0 + WEEK and row.last_drill_id == drill.id
    assert as_utc(row.last_fired_time) == T0 + timedelta(seconds=3)

    assert _tick(db, T0 + WEEK - HOUR).started == 0  # not due again before a week
    assert len(_drills(db, config)) == 1


def test_never_a_second_open_drill_of_a_configuration(db, config):
    rows.backup(db, config.id, restorable=True, snapshot_id=1)
    _schedule(db, config, every_hours=1)
    assert _tick(db, T0).started == 1
    busy = _tick(db, T0 + HOUR)  # the first drill is still open
    assert (busy.started, busy.busy) == (0, 1)
    assert len(_drills(db, config)) == 1
    assert as_utc(_row(db, config).next_due_time) == T0 + 2 * HOUR  # that was this one's proof
    _end(db, _drills(db, config)[0])
    assert _tick(db, T0 + 2 * HOUR).started == 1
    assert len(_drills(db, config)) == 2


def test_occurrences_missed_while_no_beat_ran_are_one_drill_on_the_same_phase(db, config):
    rows.backup(db, config.id, restorable=True, snapshot_id=1)
    _schedule(db, config)
    _tick(db, T0)
    _end(db, _drills(db, config)[0])
    assert _tick(db, T0 + 3 * WEEK + 5 * HOUR).started == 1  # beat was down for three weeks
    assert as_utc(_row(db, config).next_due_time) == T0 + 4 * WEEK
    assert len(_drills(db, config)) == 2


def test_without_a_restorable_backup_it_looks_again_within_the_hour(db, config):
    _schedule(db, config)
    report = _tick(db, T0)
    assert (report.started, report.without_backup) == (0, 1)
    assert as_utc(_row(db, config).next_due_time) == T0 + HOUR
    rows.backup(db, config.id, restorable=True, snapshot_id=1)
    assert _tick(db, T0 + timedelta(minutes=30)).started == 0  # not due yet
    assert _tick(db, T0 + HOUR).started == 1
    assert as_utc(_row(db, config).next_due_time) == T0 + HOUR + WEEK


def test_the_due_time_is_in_the_database_so_a_restarted_beat_carries_on(db, settings, config):
    rows.backup(db, config.id, restorable=True, snapshot_id=1)
    _schedule(db, config, every_hours=24)
    _tick(db, T0)
    _end(db, _drills(db, config)[0])
    restarted = Database(settings.resolved_database_url)  # another process's engine
    try:
        assert _tick(restarted, T0 + timedelta(hours=23)).started == 0
        assert _tick(restarted, T0 + timedelta(hours=24)).started == 1
    finally:
        restarted.dispose()


def test_a_deleted_configurations_schedule_is_forgotten(client, db, config):
    rows.backup(db, config.id, restorable=True, snapshot_id=1)
    _schedule(db, config)
    deleted = client.delete(f"/v2/{PROJECT}/configurations/{config.id}", headers=headers(token(db)))
    assert deleted.status_code == 204
    report = _tick(db, T0)
    assert (report.started, report.forgotten) == (0, 1)
    with db.read() as session:
        assert session.get(DrillSchedule, config.id) is None
    assert _drills(db, config) == []


def test_a_changed_period_counts_from_the_last_drill_and_the_same_one_changes_nothing(db, config):
    rows.backup(db, config.id, restorable=True, snapshot_id=1)
    _schedule(db, config, every_hours=168)
    _tick(db, T0)
    _schedule(db, config, every_hours=168, at=T0 + HOUR)
    assert as_utc(_row(db, config).next_due_time) == T0 + WEEK
    _schedule(db, config, every_hours=24, at=T0 + HOUR)
    assert as_utc(_row(db, config).next_due_time) == T0 + timedelta(days=1)


def test_a_scheduled_drill_runs_like_one_posted_and_passes(db, settings, tmp_path):
    tree = make_tree(tmp_path / "src", files=5, size=8_000, with_excluded=False)
    _, config, done = backed_up(db, settings, tree.root)
    _schedule(db, config, at=datetime.now(UTC))
    dispatcher = Recorder()
    assert fire_due_drills(db, dispatcher).started == 1
    [(kind, drill_id, _)] = dispatcher.published
    assert kind == "drill" and execute_drill(db, settings, drill_id) == "passed"
    [drill] = _drills(db, config)
    assert drill.backup_id == done.id and drill.files_checked == tree.files


def test_a_tick_starts_at_most_one_batch_oldest_due_first(db):
    agent = rows.agent(db)
    configs = [rows.configuration(db, agent) for _ in range(3)]
    for offset, config in enumerate(configs):
        rows.backup(db, config.id, restorable=True, snapshot_id=1)
        _schedule(db, config, at=T0 - offset * HOUR)  # the last one is the most overdue
    assert fire_due_drills(db, Recorder(), clock=lambda: T0, batch=2).started == 2
    assert [len(_drills(db, c)) for c in configs] == [0, 1, 1]
    assert fire_due_drills(db, Recorder(), clock=lambda: T0, batch=2).started == 1
    assert [len(_drills(db, c)) for c in configs] == [1, 1, 1]
