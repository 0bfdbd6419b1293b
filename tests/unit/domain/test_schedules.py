"""RRULE subset (spec §16.1, OQ-34) and run-time computation, DST included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloudbackup.domain.schedules import (
    Rule,
    Schedule,
    ScheduleError,
    check_schedule,
    load_zone,
    next_occurrence,
    parse_rule,
    schedule_time,
    upcoming,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def doc(rule: str, start: str = "2026-03-02T18:22:21Z", zone: str = "US/Central") -> dict:
    return {"start": start, "recurrence": [rule], "time_zone": zone}


def times(rule: str, after: datetime, count: int, **kw: str) -> list[str]:
    result = upcoming(doc(rule, **kw), after, count)
    assert result is not None
    return result


# -- grammar ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("RRULE:FREQ=HOURLY;INTERVAL=2", Rule("HOURLY", 2)),
        (
            "RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=14;BYMINUTE=0",
            Rule("DAILY", 1, byhour=14, byminute=0),
        ),
        (
            "RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=TH;BYHOUR=14;BYMINUTE=0",
            Rule("WEEKLY", 1, byhour=14, byminute=0, byday=(3,)),
        ),
        ("RRULE:FREQ=WEEKLY;BYDAY=SU,MO,FR", Rule("WEEKLY", 1, byday=(0, 4, 6))),
        ("RRULE:FREQ=HOURLY;BYMINUTE=15", Rule("HOURLY", 1, byminute=15)),
        ("RRULE:BYMINUTE=5;FREQ=DAILY", Rule("DAILY", 1, byminute=5)),
        ("RRULE:FREQ=DAILY;INTERVAL=10000", Rule("DAILY", 10000)),
    ],
)
def test_accepts_the_spec_samples_and_the_subset(text: str, rule: Rule) -> None:
    assert parse_rule(text) == rule


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("FREQ=HOURLY", "must start with 'RRULE:'"),
        ("rrule:FREQ=HOURLY", "must start with 'RRULE:'"),
        ("RRULE:", "is not a KEY=VALUE pair"),
        ("RRULE:FREQ=HOURLY;", "is not a KEY=VALUE pair"),
        ("RRULE:FREQ", "is not a KEY=VALUE pair"),
        ("RRULE:freq=HOURLY", "freq is not supported"),
        ("RRULE:FREQ=HOURLY;COUNT=3", "COUNT is not supported"),
        ("RRULE:FREQ=DAILY;UNTIL=20300101T000000Z", "UNTIL is not supported"),
        ("RRULE:FREQ=DAILY;BYSECOND=5", "BYSECOND is not supported"),
        ("RRULE:FREQ=WEEKLY;WKST=SU", "WKST is not supported"),
        ("RRULE:FREQ=HOURLY;FREQ=DAILY", "FREQ is given twice"),
        ("RRULE:INTERVAL=2", "FREQ is required"),
        ("RRULE:FREQ=MONTHLY", "FREQ must be one of HOURLY, DAILY, WEEKLY"),
        ("RRULE:FREQ=hourly", "FREQ must be one of"),
        ("RRULE:FREQ=HOURLY;INTERVAL=0", "INTERVAL must be an integer from 1 to 10000"),
        ("RRULE:FREQ=HOURLY;INTERVAL=-1", "INTERVAL must be"),
        ("RRULE:FREQ=HOURLY;INTERVAL=02", "INTERVAL must be"),
        ("RRULE:FREQ=HOURLY;INTERVAL=1.5", "INTERVAL must be"),
        ("RRULE:FREQ=HOURLY;INTERVAL=10001", "INTERVAL must be"),
        ("RRULE:FREQ=DAILY;BYHOUR=24", "BYHOUR must be an integer from 0 to 23"),
        ("RRULE:FREQ=DAILY;BYHOUR=-1", "BYHOUR must be"),
        ("RRULE:FREQ=DAILY;BYHOUR=1,13", "BYHOUR takes a single value"),
        ("RRULE:FREQ=HOURLY;BYHOUR=3", "BYHOUR applies to DAILY and WEEKLY only"),
        ("RRULE:FREQ=DAILY;BYMINUTE=60", "BYMINUTE must be an integer from 0 to 59"),
        ("RRULE:FREQ=DAILY;BYMINUTE=0,30", "BYMINUTE takes a single value"),
        ("RRULE:FREQ=DAILY;BYDAY=MO", "BYDAY applies to WEEKLY only"),
        ("RRULE:FREQ=WEEKLY;BYDAY=1MO", "BYDAY values must be MO, TU, WE, TH, FR, SA, SU"),
        ("RRULE:FREQ=WEEKLY;BYDAY=mo", "BYDAY values must be"),
        ("RRULE:FREQ=WEEKLY;BYDAY=MO,", "BYDAY values must be"),
        ("RRULE:FREQ=WEEKLY;BYDAY=MO,MO", "BYDAY lists a day twice"),
    ],
)
def test_rejects_everything_else(text: str, fragment: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_rule(text)
    assert fragment in str(caught.value)


def test_check_schedule_wants_exactly_one_rule_and_an_iana_zone() -> None:
    assert check_schedule(["RRULE:FREQ=HOURLY;INTERVAL=2"], "US/Central") == []
    assert check_schedule(["RRULE:FREQ=HOURLY"], "Europe/Berlin") == []
    assert check_schedule([], "UTC") == [
        "schedule.recurrence must hold exactly one RRULE string, not 0."
    ]
    two = check_schedule(["RRULE:FREQ=HOURLY", "RRULE:FREQ=DAILY"], "UTC")
    assert two == ["schedule.recurrence must hold exactly one RRULE string, not 2."]
    problems = check_schedule(["RRULE:FREQ=YEARLY"], "Mars/Olympus_Mons")
    assert len(problems) == 2
    assert "FREQ must be one of" in problems[0]
    assert problems[1] == (
        "time_zone 'Mars/Olympus_Mons' is not a name from the IANA time zone database."
    )


@pytest.mark.parametrize("name", ["", "us/central", "../../etc/passwd", "/etc/localtime", "CST "])
def test_unknown_time_zones_are_refused(name: str) -> None:
    with pytest.raises(ScheduleError):
        load_zone(name)


# -- run times -------------------------------------------------------------------------------


def test_spec_example_hourly_every_two_hours_from_the_start() -> None:
    # spec §16.1: start 18:22:21Z and HOURLY;INTERVAL=2 give next.scheduled_time 20:22:21Z.
    schedule = doc("RRULE:FREQ=HOURLY;INTERVAL=2", start="2014-08-05T18:22:21Z")
    assert next_occurrence(schedule, utc(2014, 8, 5, 18, 22, 21, 500)) == utc(
        2014, 8, 5, 20, 22, 21
    )
    assert upcoming(schedule, utc(2014, 8, 5, 18, 22, 22), 3) == [
        "2014-08-05T20:22:21Z",
        "2014-08-05T22:22:21Z",
        "2014-08-06T00:22:21Z",
    ]
    # Strictly after: a run time equal to `after` is not the next one.
    assert next_occurrence(schedule, utc(2014, 8, 5, 20, 22, 21)) == utc(2014, 8, 5, 22, 22, 21)


def test_the_anchor_itself_counts_but_nothing_before_it() -> None:
    schedule = doc("RRULE:FREQ=HOURLY;INTERVAL=2", start="2026-01-10T06:00:00Z")
    assert next_occurrence(schedule, utc(2020, 1, 1)) == utc(2026, 1, 10, 6)
    daily = doc("RRULE:FREQ=DAILY;BYHOUR=8;BYMINUTE=0", start="2026-01-10T15:00:00Z")
    # 08:00 CST on the 10th is 14:00Z, before the anchor: the first run is the next day.
    assert next_occurrence(daily, utc(2020, 1, 1)) == utc(2026, 1, 11, 14)


def test_next_time_years_after_the_anchor_is_aligned_and_cheap() -> None:
    schedule = doc("RRULE:FREQ=HOURLY;INTERVAL=5", start="2014-08-05T18:22:21Z", zone="UTC")
    after = utc(2030, 6, 1, 12)
    got = next_occurrence(schedule, after)
    assert got is not None
    assert after < got <= after + timedelta(hours=5)
    assert (got - utc(2014, 8, 5, 18, 22, 21)) % timedelta(hours=5) == timedelta(0)


def test_hourly_runs_stay_two_hours_apart_across_spring_forward_in_us_central() -> None:
    # 2026-03-08 02:00 CST -> 03:00 CDT. Elapsed time between runs stays two hours.
    got = times("RRULE:FREQ=HOURLY;INTERVAL=2", utc(2026, 3, 8, 5), 4, start="2026-03-07T00:00:00Z")
    assert got == [
        "2026-03-08T06:00:00Z",  # 00:00 CST
        "2026-03-08T08:00:00Z",  # 02:00 CST does not exist: 03:00 CDT
        "2026-03-08T10:00:00Z",  # 05:00 CDT
        "2026-03-08T12:00:00Z",
    ]


def test_hourly_byminute_moves_the_series_to_that_minute() -> None:
    got = times(
        "RRULE:FREQ=HOURLY;INTERVAL=3;BYMINUTE=45", utc(2026, 5, 1), 3, start="2026-05-01T10:20:05Z"
    )
    assert got == ["2026-05-01T10:45:00Z", "2026-05-01T13:45:00Z", "2026-05-01T16:45:00Z"]


def test_daily_wall_clock_time_follows_dst_in_us_central() -> None:
    rule = "RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=14;BYMINUTE=0"
    spring = times(rule, utc(2026, 3, 6, 21), 3, start="2026-03-01T00:00:00Z")
    assert spring == [
        "2026-03-07T20:00:00Z",  # 14:00 CST (UTC-6)
        "2026-03-08T19:00:00Z",  # 14:00 CDT (UTC-5), the day DST begins
        "2026-03-09T19:00:00Z",
    ]
    autumn = times(rule, utc(2026, 10, 31, 20), 2, start="2026-03-01T00:00:00Z")
    assert autumn == ["2026-11-01T20:00:00Z", "2026-11-02T20:00:00Z"]  # back to CST


def test_a_skipped_wall_time_runs_after_the_shift_and_a_repeated_one_runs_once() -> None:
    gap = times(
        "RRULE:FREQ=DAILY;BYHOUR=2;BYMINUTE=30", utc(2026, 3, 7, 9), 2, start="2026-03-01T00:00:00Z"
    )
    assert gap == ["2026-03-08T08:30:00Z", "2026-03-09T07:30:00Z"]  # 03:30 CDT, then 02:30 CDT
    repeat = times(
        "RRULE:FREQ=DAILY;BYHOUR=1;BYMINUTE=30",
        utc(2026, 10, 31, 7),
        2,
        start="2026-03-01T00:00:00Z",
    )
    assert repeat == ["2026-11-01T06:30:00Z", "2026-11-02T07:30:00Z"]  # 01:30 CDT only


def test_daily_interval_counts_days_from_the_anchor_date() -> None:
    got = times(
        "RRULE:FREQ=DAILY;INTERVAL=3;BYHOUR=0;BYMINUTE=0",
        utc(2026, 1, 4),
        3,
        start="2026-01-01T00:00:00Z",
        zone="UTC",
    )
    assert got == ["2026-01-07T00:00:00Z", "2026-01-10T00:00:00Z", "2026-01-13T00:00:00Z"]


def test_daily_without_byhour_keeps_the_anchor_time_of_day() -> None:
    got = times("RRULE:FREQ=DAILY", utc(2026, 7, 1), 2, start="2026-06-01T16:05:09Z")
    assert got == ["2026-07-01T16:05:09Z", "2026-07-02T16:05:09Z"]


def test_weekly_spec_sample_runs_thursdays_at_two_pm_local() -> None:
    rule = "RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=TH;BYHOUR=14;BYMINUTE=0"
    # 2026-03-02 is a Monday.
    got = times(rule, utc(2026, 3, 2, 19), 3)
    assert got == ["2026-03-05T20:00:00Z", "2026-03-12T19:00:00Z", "2026-03-19T19:00:00Z"]


def test_weekly_every_other_week_on_several_days() -> None:
    rule = "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TH,SU;BYHOUR=14;BYMINUTE=0"
    got = times(rule, utc(2026, 3, 1), 5, start="2026-03-05T18:22:21Z")
    assert got == [
        "2026-03-05T20:00:00Z",  # Thu, week 0
        "2026-03-08T19:00:00Z",  # Sun, week 0 (DST began that morning)
        "2026-03-19T19:00:00Z",  # week 1 skipped
        "2026-03-22T19:00:00Z",
        "2026-04-02T19:00:00Z",
    ]


def test_weekly_without_byday_uses_the_anchor_weekday() -> None:
    got = times("RRULE:FREQ=WEEKLY;BYHOUR=9", utc(2026, 3, 3), 2, start="2026-03-03T12:00:00Z")
    assert got == ["2026-03-03T15:00:00Z", "2026-03-10T14:00:00Z"]  # Tuesdays, 09:00 local


def test_no_schedule_means_no_run_time() -> None:
    assert next_occurrence(None, utc(2026, 1, 1)) is None
    assert upcoming(None, utc(2026, 1, 1), 3) is None


def test_from_document_reads_the_stored_form() -> None:
    schedule = Schedule.from_document(doc("RRULE:FREQ=HOURLY"))
    assert schedule.start == utc(2026, 3, 2, 18, 22, 21)
    assert str(schedule.zone) == "US/Central"


def test_schedule_times_have_no_fraction_and_a_z() -> None:
    assert schedule_time(utc(2014, 8, 5, 18, 22, 21, 238641)) == "2014-08-05T18:22:21Z"
    assert schedule_time(datetime(2014, 8, 5, 18, 22, 21)) == "2014-08-05T18:22:21Z"
