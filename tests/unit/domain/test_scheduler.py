"""Schedules that fire (with a controllable clock), in-process on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from cloudbackup.domain import scheduler
from cloudbackup.domain.backup_run import claim_backup, execute_backup
from cloudbackup.domain.schedules import schedule_time
from cloudbackup.store.tables import Backup, Configuration, Event, as_utc
from factories import rows
from factories.trees import make_tree

T0 = datetime(2027, 3, 10, 12, 0, 0, tzinfo=UTC)


class Recorder:
    """Dispatcher of these tests: keeps what would have been published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str | None]] = []

    def publish(self, kind: str, resource_id: str, *, agent_id: str | None = None) -> bool:
        self.published.append((resource_id, agent_id))
        return True


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _scheduled(db, agent=None, *, rule="RRULE:FREQ=HOURLY;INTERVAL=2", zone="UTC", start=T0, **kw):
    agent = agent or rows.agent(db)
    schedule = {"start": schedule_time(start), "recurrence": [rule], "time_zone": zone}
    first = kw.pop("next_scheduled_time", None)
    if first is None:
        from cloudbackup.domain.schedules import next_occurrence

        first = next_occurrence(schedule, start)
    return rows.configuration(db, agent, schedule=schedule, next_scheduled_time=first, **kw)


def _backups(db, config_id: str) -> list[Backup]:
    with db.transaction() as session:
        return list(
            session.execute(
                sa.select(Backup).where(Backup.configuration_id == config_id).order_by(Backup.seq)
            ).scalars()
        )


def _next(db, config_id: str) -> datetime | None:
    with db.transaction() as session:
        value = session.execute(
            sa.select(Configuration.next_scheduled_time).where(Configuration.id == config_id)
        ).scalar_one()
    return None if value is None else as_utc(value)


def _events(db, backup_id: str) -> list[Event]:
    with db.transaction() as session:
        return list(
            session.execute(
                sa.select(Event).where(Event.backup_id == backup_id).order_by(Event.id)
            ).scalars()
        )


def test_a_due_schedule_fires_once_through_b1_and_moves_to_the_next_occurrence(db, settings):
    config = _scheduled(db)
    assert _next(db, config.id) == T0 + timedelta(hours=2)
    sent = Recorder()
    clock = Clock(T0 + timedelta(hours=2, seconds=3))

    report = scheduler.tick(db, sent, settings, clock=clock)
    assert (report.fired, report.lags) == (1, [3.0])
    backups = _backups(db, config.id)
    assert [b.state for b in backups] == ["start_scheduled"]
    assert backups[0].agent_id == config.agent_id
    assert sent.published == [(backups[0].id, config.agent_id)]
    assert [e.event for e in _events(db, backups[0].id)] == ["backup_start_request"]
    assert _next(db, config.id) == T0 + timedelta(hours=4)

    again = scheduler.tick(db, sent, settings, clock=clock)  # same instant: nothing is due
    assert (again.fired, len(_backups(db, config.id))) == (0, 1)

    clock.now = T0 + timedelta(hours=4)
    report = scheduler.tick(db, sent, settings, clock=clock)
    assert (report.fired, report.lags) == (1, [0.0])
    assert len(_backups(db, config.id)) == 2


def test_the_tick_reports_each_firings_lag(db, settings):
    configs = [_scheduled(db) for _ in range(3)]
    report = scheduler.tick(
        db, Recorder(), settings, clock=Clock(T0 + timedelta(hours=2, seconds=7)), batch=2
    )
    assert report.fired == 3  # two batches
    assert report.lags == [7.0, 7.0, 7.0]
    assert all(len(_backups(db, c.id)) == 1 for c in configs)


def test_the_compare_and_set_lets_only_one_scheduler_fire_an_occurrence(db, settings):
    config = _scheduled(db)
    due = _next(db, config.id)
    scheduler.tick(db, Recorder(), settings, clock=Clock(due))
    # A second scheduler that read the same due time before the first one wrote loses the CAS.
    with db.transaction() as session:
        assert not scheduler._advance(session, config.id, due, due + timedelta(hours=2))
    assert len(_backups(db, config.id)) == 1


def test_dst_wall_clock_times_in_the_configurations_zone(db, settings):
    # 02:30 every day in US/Central; 2027-03-14 has no 02:30 (clocks jump 02:00 -> 03:00 CDT).
    start = datetime(2027, 3, 12, 6, 0, tzinfo=UTC)
    config = _scheduled(
        db, rule="RRULE:FREQ=DAILY;BYHOUR=2;BYMINUTE=30", zone="US/Central", start=start
    )
    fired_at = []
    clock = Clock(start)
    for _ in range(4):
        clock.now = _next(db, config.id)
        assert scheduler.tick(db, Recorder(), settings, clock=clock).fired == 1
        fired_at.append(clock.now)
    assert fired_at == [
        datetime(2027, 3, 12, 8, 30, tzinfo=UTC),  # 02:30 CST
        datetime(2027, 3, 13, 8, 30, tzinfo=UTC),  # 02:30 CST
        datetime(2027, 3, 14, 8, 30, tzinfo=UTC),  # skipped wall time: 03:30 CDT
        datetime(2027, 3, 15, 7, 30, tzinfo=UTC),  # 02:30 CDT
    ]


def test_a_run_found_due_after_its_window_is_recorded_missed_once(db, settings):
    config = _scheduled(db)
    sent = Recorder()
    # The scheduler was down for three occurrences (2 h apart); the window is one hour.
    clock = Clock(T0 + timedelta(hours=7))
    report = scheduler.tick(db, sent, settings, clock=clock)
    assert (report.fired, report.missed) == (0, 1)
    [backup] = _backups(db, config.id)
    assert backup.state == "missed" and not backup.restorable and backup.ended_time is not None
    events = _events(db, backup.id)
    assert [e.event for e in events] == ["backup_start_request", "backup_missed"]
    assert events[1].members["request_id"] == backup.request_id
    assert sent.published == []
    assert _next(db, config.id) == T0 + timedelta(hours=8)


def test_a_late_run_within_its_window_still_fires(db, settings):
    config = _scheduled(db)
    report = scheduler.tick(db, Recorder(), settings, clock=Clock(T0 + timedelta(hours=2.9)))
    assert (report.fired, report.missed) == (1, 0)
    assert report.lags == [pytest.approx(0.9 * 3600)]
    assert _backups(db, config.id)[0].state == "start_scheduled"


def test_disabled_configurations_and_agents_do_not_fire(db, settings):
    off_config = _scheduled(db, enabled=False)
    off_agent = _scheduled(db, rows.agent(db, enabled=False))
    deleted = _scheduled(db, deleted=True)
    sent = Recorder()
    report = scheduler.tick(db, sent, settings, clock=Clock(T0 + timedelta(hours=2)))
    assert (report.fired, report.passed) == (0, 1)
    assert sent.published == []
    for config in (off_config, off_agent, deleted):
        assert _backups(db, config.id) == []
    # The disabled agent's occurrence is passed over, so re-enabling it does not fire a backlog.
    assert _next(db, off_agent.id) == T0 + timedelta(hours=4)


def test_a_run_due_while_the_previous_is_active_ends_skipped(db, settings, tmp_path):
    tree = make_tree(tmp_path / "src", files=4)
    config = _scheduled(db, inclusions=[{"type": "folder", "path": f"{tree.root}/"}])
    clock = Clock(T0 + timedelta(hours=2))
    scheduler.tick(db, Recorder(), settings, clock=clock)
    clock.now = T0 + timedelta(hours=4)
    scheduler.tick(db, Recorder(), settings, clock=clock)
    first, second = _backups(db, config.id)
    assert claim_backup(db, settings, first.id) is not None  # the first one is running
    assert execute_backup(db, settings, second.id) == "noop"
    assert _backups(db, config.id)[1].state == "skipped"


def test_scheduled_runs_keep_last_completed_and_next_true(client, db, settings, tmp_path):
    from factories.api import headers, token

    tree = make_tree(tmp_path / "src", files=4)
    config = _scheduled(db, inclusions=[{"type": "folder", "path": f"{tree.root}/"}])
    scheduler.tick(db, Recorder(), settings, clock=Clock(T0 + timedelta(hours=2)))
    [backup] = _backups(db, config.id)
    assert execute_backup(db, settings, backup.id) == "completed"
    body = client.get(
        f"/v2/{config.project_id}/configurations/{config.id}", headers=headers(token(db))
    ).json()
    assert body["backups"]["last_completed"]["id"] == backup.id
    # Rendered from the schedule: the first occurrence after now (the anchor is in 2027).
    assert body["backups"]["next"]["scheduled_time"] == "2027-03-10T12:00:00Z"  # the anchor


def test_waiting_scheduled_runs_that_never_started_end_missed(db, settings):
    agent = rows.agent(db)
    config = rows.configuration(db, agent)
    now = datetime.now(UTC)
    old = rows.backup(db, config.id, state="start_scheduled", created_at=now - timedelta(hours=2))
    fresh = rows.backup(db, config.id, state="start_scheduled", created_at=now)
    manual = rows.backup(
        db, config.id, state="start_requested", created_at=now - timedelta(hours=2)
    )
    assert scheduler.tick(db, Recorder(), settings, clock=Clock(now)).expired == 1
    states = {b.id: b.state for b in _backups(db, config.id)}
    assert states == {old.id: "missed", fresh.id: "start_scheduled", manual.id: "start_requested"}
    assert [e.event for e in _events(db, old.id)] == ["backup_missed"]
    # A worker that picks the missed run up afterwards does nothing.
    assert claim_backup(db, settings, old.id) is None
