"""Configuration schedules (spec §16.1, OQ-34): the RRULE subset we accept and when it fires.

Pure functions, no I/O. A schedule is an anchor instant (``schedule.start``, set by the server),
one RRULE and an IANA time zone. The rule is read as follows:

* ``HOURLY``: every ``INTERVAL`` hours of elapsed time from the anchor, so a run every two hours
  stays two hours apart across a DST change. With ``BYMINUTE`` the series is moved to that minute
  of the anchor's local hour.
* ``DAILY`` / ``WEEKLY``: at the wall-clock time ``BYHOUR:BYMINUTE:00`` in ``time_zone`` (a
  missing part is taken from the anchor's local time; seconds are the anchor's only when neither
  is given), on every ``INTERVAL``-th day, or on the ``BYDAY`` days of every ``INTERVAL``-th week
  (weeks start on Monday, counted from the anchor's week; no ``BYDAY`` means the anchor's
  weekday). A wall time that a DST change skips runs at the same time after the shift (02:30 on
  the spring-forward day runs at 03:30); a time that occurs twice runs once, at the first.

Occurrences before the anchor never count.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

FREQUENCIES = ("HOURLY", "DAILY", "WEEKLY")
KEYS = ("FREQ", "INTERVAL", "BYHOUR", "BYMINUTE", "BYDAY")
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
MAX_INTERVAL = 10_000
PREFIX = "RRULE:"

_NUMBER = re.compile(r"[0-9]{1,2}")
_INTERVAL = re.compile(r"[1-9][0-9]*")


class ScheduleError(ValueError):
    """A recurrence or time zone we do not accept; the message names the problem."""


@dataclass(frozen=True, slots=True)
class Rule:
    freq: str
    interval: int = 1
    byhour: int | None = None
    byminute: int | None = None
    byday: tuple[int, ...] = ()  # weekday numbers, Monday = 0, ascending


def parse_rule(text: str) -> Rule:
    """Parse one RRULE string of the accepted subset, or raise ``ScheduleError``."""
    values = _pairs(text)
    freq = values.get("FREQ")
    if freq is None:
        raise ScheduleError(f"Recurrence {text!r}: FREQ is required.")
    if freq not in FREQUENCIES:
        raise ScheduleError(
            f"Recurrence {text!r}: FREQ must be one of {', '.join(FREQUENCIES)}, not {freq!r}."
        )
    interval = _interval(text, values)
    byhour = _single(text, values, "BYHOUR", 23)
    if byhour is not None and freq == "HOURLY":
        raise ScheduleError(f"Recurrence {text!r}: BYHOUR applies to DAILY and WEEKLY only.")
    byminute = _single(text, values, "BYMINUTE", 59)
    return Rule(freq, interval, byhour, byminute, _weekdays(text, values, freq))


def _pairs(text: str) -> dict[str, str]:
    """The rule's KEY=VALUE parts, each a known key given once."""
    if not text.startswith(PREFIX):
        raise ScheduleError(f"Recurrence {text!r} must start with {PREFIX!r}.")
    values: dict[str, str] = {}
    for part in text[len(PREFIX) :].split(";"):
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise ScheduleError(f"Recurrence {text!r}: {part!r} is not a KEY=VALUE pair.")
        if key not in KEYS:
            raise ScheduleError(
                f"Recurrence {text!r}: {key} is not supported; use {', '.join(KEYS)}."
            )
        if key in values:
            raise ScheduleError(f"Recurrence {text!r}: {key} is given twice.")
        values[key] = value
    return values


def _interval(text: str, values: Mapping[str, str]) -> int:
    raw = values.get("INTERVAL")
    if raw is None:
        return 1
    if not _INTERVAL.fullmatch(raw) or int(raw) > MAX_INTERVAL:
        raise ScheduleError(
            f"Recurrence {text!r}: INTERVAL must be an integer from 1 to {MAX_INTERVAL}."
        )
    return int(raw)


def _weekdays(text: str, values: Mapping[str, str], freq: str) -> tuple[int, ...]:
    """BYDAY as weekday numbers (Monday = 0), ascending; empty when not given."""
    if "BYDAY" not in values:
        return ()
    if freq != "WEEKLY":
        raise ScheduleError(f"Recurrence {text!r}: BYDAY applies to WEEKLY only.")
    days = values["BYDAY"].split(",")
    for day in days:
        if day not in WEEKDAYS:
            raise ScheduleError(
                f"Recurrence {text!r}: BYDAY values must be {', '.join(WEEKDAYS)}, not {day!r}."
            )
    if len(set(days)) != len(days):
        raise ScheduleError(f"Recurrence {text!r}: BYDAY lists a day twice.")
    return tuple(sorted(WEEKDAYS.index(day) for day in days))


def _single(text: str, values: Mapping[str, str], key: str, highest: int) -> int | None:
    raw = values.get(key)
    if raw is None:
        return None
    if "," in raw:
        raise ScheduleError(f"Recurrence {text!r}: {key} takes a single value.")
    if not _NUMBER.fullmatch(raw) or int(raw) > highest:
        raise ScheduleError(f"Recurrence {text!r}: {key} must be an integer from 0 to {highest}.")
    return int(raw)


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def load_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (e.g. ``US/Central``), or ``ScheduleError``."""
    if name not in _zone_names():
        raise ScheduleError(f"time_zone {name!r} is not a name from the IANA time zone database.")
    return ZoneInfo(name)


def check_schedule(recurrence: list[str], time_zone: str) -> list[str]:
    """Every problem of a schedule's user-supplied parts (empty when it is acceptable)."""
    problems: list[str] = []
    if len(recurrence) != 1:
        problems.append(
            f"schedule.recurrence must hold exactly one RRULE string, not {len(recurrence)}."
        )
    else:
        try:
            parse_rule(recurrence[0])
        except ScheduleError as exc:
            problems.append(str(exc))
    try:
        load_zone(time_zone)
    except ScheduleError as exc:
        problems.append(str(exc))
    return problems


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed, valid schedule: anchor (UTC), rule and zone."""

    start: datetime
    rule: Rule
    zone: ZoneInfo

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Schedule:
        """From the stored form ``{"start", "recurrence", "time_zone"}``."""
        start = datetime.fromisoformat(str(document["start"]).replace("Z", "+00:00"))
        return cls(
            start=start if start.tzinfo else start.replace(tzinfo=UTC),
            rule=parse_rule(document["recurrence"][0]),
            zone=load_zone(document["time_zone"]),
        )

    def occurrences(self, after: datetime) -> Iterator[datetime]:
        """Run times (UTC, ascending) strictly after ``after`` and not before the anchor."""
        if self.rule.freq == "HOURLY":
            yield from self._hourly(after)
        else:
            yield from self._calendar(after)

    def _hourly(self, after: datetime) -> Iterator[datetime]:
        anchor = self.start
        if self.rule.byminute is not None:
            local = self.start.astimezone(self.zone)
            anchor = local.replace(minute=self.rule.byminute, second=0, microsecond=0)
            anchor = anchor.astimezone(UTC)
        step = timedelta(hours=self.rule.interval)
        low = max(after, self.start - timedelta(microseconds=1))
        k = max(0, (low - anchor) // step)
        moment = anchor + k * step
        try:
            while True:
                if moment > after and moment >= self.start:
                    yield moment
                moment += step
        except OverflowError:
            return

    def _calendar(self, after: datetime) -> Iterator[datetime]:
        local = self.start.astimezone(self.zone)
        rule = self.rule
        given = rule.byhour is not None or rule.byminute is not None
        at = time(
            rule.byhour if rule.byhour is not None else local.hour,
            rule.byminute if rule.byminute is not None else local.minute,
            0 if given else local.second,
        )
        first = max(local.date(), after.astimezone(self.zone).date() - timedelta(days=1))
        for day in self._days(local.date(), first):
            moment = datetime.combine(day, at, tzinfo=self.zone).astimezone(UTC)
            if moment > after and moment >= self.start:
                yield moment

    def _days(self, base: date, first: date) -> Iterator[date]:
        """Dates on or after ``first`` that the rule selects, counting periods from ``base``."""
        n = self.rule.interval
        try:
            if self.rule.freq == "DAILY":
                day = base + timedelta(days=-(-(first - base).days // n) * n)
                while True:
                    yield day
                    day += timedelta(days=n)
            weekdays = self.rule.byday or (base.weekday(),)
            monday = base - timedelta(days=base.weekday())
            week = -(-((first - monday).days // 7) // n) * n
            while True:
                start_of_week = monday + timedelta(weeks=week)
                for weekday in weekdays:
                    day = start_of_week + timedelta(days=weekday)
                    if day >= first:
                        yield day
                week += n
        except OverflowError:
            return

    def next_after(self, after: datetime) -> datetime | None:
        return next(self.occurrences(after), None)

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        result: list[datetime] = []
        for moment in self.occurrences(after):
            if len(result) == count:
                break
            result.append(moment)
        return result


def next_occurrence(document: Mapping[str, Any] | None, after: datetime) -> datetime | None:
    """The first run time after ``after`` of a stored schedule (``None`` for no schedule)."""
    if document is None:
        return None
    return Schedule.from_document(document).next_after(after)


def upcoming(document: Mapping[str, Any] | None, after: datetime, count: int) -> list[str] | None:
    """The next ``count`` run times as schedule-time strings (A7 ``times``), or ``None``."""
    if document is None:
        return None
    return [schedule_time(t) for t in Schedule.from_document(document).upcoming(after, count)]


def schedule_time(value: datetime) -> str:
    """Schedule times are UTC without a fraction (OQ-18): ``2014-08-05T18:22:21Z``."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
