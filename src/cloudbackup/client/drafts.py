"""Configuration documents from words a person types, for the CLI flags and the console form.

Only the *spelling* is decided here (``file:/etc/hosts``, ``daily 02:30``); whether the result is
acceptable (paths, RRULE, time zone, e-mail) is decided by the API, which answers 400 with reasons.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
FREQUENCIES = ("HOURLY", "DAILY", "WEEKLY")
SCHEDULE_HELP = (
    "none | hourly | every N hours | daily HH:MM | every N days HH:MM | "
    "weekly mon,thu HH:MM | RRULE:..."
)

_TIME = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")


class DraftError(ValueError):
    """Words that do not spell a path, a schedule or a document; the message shows the forms."""


# -- paths ------------------------------------------------------------------------------------
def path_item(text: str) -> dict[str, str]:
    """``/home/me/docs`` -> a folder (``/home/me/docs/``); ``file:/etc/hosts`` -> a file.

    Folders are the common case, so a bare path is a folder; ``folder:`` may be written too.
    """
    text = text.strip()
    kind = "folder"
    for prefix in ("file:", "folder:"):
        if text.startswith(prefix):
            kind, text = prefix[:-1], text[len(prefix) :].strip()
    if kind == "folder" and text and not text.endswith("/"):
        text += "/"  # the spec's folder paths end in "/" (§2.4)
    return {"type": kind, "path": text}


def path_text(item: dict[str, Any]) -> str:
    """The inverse of :func:`path_item`."""
    path = str(item.get("path", ""))
    return f"file:{path}" if item.get("type") == "file" else path


def path_items(lines: list[str] | str) -> list[dict[str, str]]:
    """One item per non-blank line (a textarea) or per list entry (repeated flags)."""
    entries = lines.splitlines() if isinstance(lines, str) else lines
    return [path_item(entry) for entry in entries if entry.strip()]


# -- schedules --------------------------------------------------------------------------------
def rrule(
    freq: str, interval: int = 1, at: str | None = None, days: list[str] | None = None
) -> str:
    """The RRULE of the spec's samples (§16.1) for a frequency, interval, ``HH:MM`` and days."""
    freq = freq.upper()
    if freq not in FREQUENCIES:
        raise DraftError(f"frequency must be one of {', '.join(FREQUENCIES).lower()}")
    if interval < 1:
        raise DraftError("the interval must be 1 or more")
    parts = [f"FREQ={freq}", f"INTERVAL={interval}"]
    if freq == "WEEKLY":
        codes = [_weekday(day) for day in days or []]
        if not codes:
            raise DraftError("a weekly schedule needs at least one day (e.g. mon,thu)")
        parts.append("BYDAY=" + ",".join(sorted(set(codes), key=WEEKDAYS.index)))
    if freq != "HOURLY":
        match = _TIME.fullmatch((at or "").strip())
        if match is None:
            raise DraftError(f"{freq.lower()} schedules need a time as HH:MM (24 h), e.g. 02:30")
        parts += [f"BYHOUR={int(match[1])}", f"BYMINUTE={int(match[2])}"]
    return "RRULE:" + ";".join(parts)


def _weekday(name: str) -> str:
    code = name.strip().upper()[:2]
    if code not in WEEKDAYS:
        raise DraftError(f"{name!r} is not a day of the week (mon, tue, wed, thu, fri, sat, sun)")
    return code


def schedule_from_words(text: str | None, time_zone: str) -> dict[str, Any] | None:
    """``daily 02:30`` in ``Europe/Paris`` -> a CF1 ``schedule``; ``none`` -> ``None``."""
    words = (text or "").strip()
    if words.lower() in ("", "none", "manual", "off"):
        return None
    if words.upper().startswith("RRULE:"):
        return {"recurrence": [words], "time_zone": time_zone}
    tokens = words.lower().replace(" at ", " ").replace(" on ", " ").split()
    interval = 1
    if tokens[0] == "every" and len(tokens) >= 3 and tokens[1].isascii() and tokens[1].isdigit():
        interval, unit = int(tokens[1]), tokens[2].rstrip("s")
        tokens = [{"hour": "hourly", "day": "daily", "week": "weekly"}.get(unit, unit), *tokens[3:]]
    kind, rest = tokens[0], tokens[1:]
    try:
        if kind == "hourly" and not rest:
            rule = rrule("HOURLY", interval)
        elif kind == "daily" and len(rest) <= 1:
            rule = rrule("DAILY", interval, rest[0] if rest else None)
        elif kind == "weekly" and 1 <= len(rest) <= 2:
            at = rest[-1] if ":" in rest[-1] else None
            days = [] if ":" in rest[0] else rest[0].split(",")
            rule = rrule("WEEKLY", interval, at, days)
        else:
            raise DraftError("")
    except DraftError as exc:
        hint = f"{exc}; " if str(exc) else ""
        raise DraftError(f"schedule {words!r}: {hint}write {SCHEDULE_HELP}") from exc
    return {"recurrence": [rule], "time_zone": time_zone}


def rule_parts(rule: str) -> dict[str, str]:
    """``RRULE:FREQ=DAILY;BYHOUR=2`` -> ``{"FREQ": "DAILY", "BYHOUR": "2"}`` (best effort)."""
    body = rule[len("RRULE:") :] if rule.startswith("RRULE:") else rule
    return dict(part.split("=", 1) for part in body.split(";") if "=" in part)


def schedule_words(schedule: dict[str, Any] | None) -> str:
    """A configuration's schedule for people: ``daily at 02:30 (Europe/Paris)``, ``hourly at :15
    (UTC)``, ``weekly on Mon,Thu at 14:00 (UTC)``."""
    if not schedule:
        return "manual only"
    rule = (schedule.get("recurrence") or [""])[0]
    zone = schedule.get("time_zone", "")
    parts = rule_parts(rule)
    freq, interval = parts.get("FREQ", ""), int(parts.get("INTERVAL", "1") or 1)
    every = {"HOURLY": "hour", "DAILY": "day", "WEEKLY": "week"}.get(freq)
    if every is None:
        return f"{rule} ({zone})"
    text = f"every {interval} {every}s" if interval > 1 else freq.lower()
    if freq == "WEEKLY" and parts.get("BYDAY"):
        days = [DAY_NAMES[WEEKDAYS.index(d)] for d in parts["BYDAY"].split(",") if d in WEEKDAYS]
        text += " on " + ",".join(days)
    return f"{text}{_time_of_day(freq, parts, _local_anchor(schedule))} ({zone})"


def _time_of_day(freq: str, parts: dict[str, str], anchor: datetime | None) -> str:
    """`` at :15`` (hourly) or `` at 02:30``: BYMINUTE and BYHOUR, a part the rule leaves out
    taken from the anchor's local time as the scheduler does (domain/schedules.py); empty when
    neither says."""
    minute = _number(parts.get("BYMINUTE"))
    if minute is None and anchor is not None:
        minute = anchor.minute
    if freq == "HOURLY":
        return "" if minute is None else f" at :{minute:02d}"
    hour = _number(parts.get("BYHOUR"))
    if hour is None and anchor is not None:
        hour = anchor.hour
    if hour is None:
        return ""
    return f" at {hour:02d}:{minute or 0:02d}"


def _number(text: str | None) -> int | None:
    return int(text) if text is not None and text.isascii() and text.isdigit() else None


def _local_anchor(schedule: dict[str, Any]) -> datetime | None:
    """``schedule.start`` (set by the server) in the schedule's time zone, if both are readable."""
    start = schedule.get("start")
    if not isinstance(start, str):
        return None
    try:
        moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
        return moment.astimezone(ZoneInfo(str(schedule.get("time_zone") or "UTC")))
    except (ValueError, KeyError, ZoneInfoNotFoundError):
        return None


# -- whole documents --------------------------------------------------------------------------
def notifications(emails: list[str], on_success: bool = False) -> list[dict[str, Any]]:
    return [
        {"type": "email", "destination": e.strip(), "on_success": on_success, "on_failure": True}
        for e in emails
        if e.strip()
    ]


def configuration_body(
    *,
    agent_id: str,
    name: str,
    inclusions: list[dict[str, str]],
    exclusions: list[dict[str, str]],
    schedule: dict[str, Any] | None,
    retention_days: int,
    emails: list[str],
    notify_on_success: bool = False,
    enabled: bool = True,
) -> dict[str, Any]:
    """A complete CF1 body (every key is required by the spec, §16)."""
    return {
        "agent_id": agent_id,
        "name": name,
        "enabled": enabled,
        "schedule": schedule,
        "retention": {"days": retention_days},
        "inclusions": inclusions,
        "exclusions": exclusions,
        "notifications": notifications(emails, notify_on_success),
    }


def load_document(path: Path) -> dict[str, Any]:
    """A JSON or YAML file holding one object (a CF1 body, possibly partial)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DraftError(f"cannot read {path}: {exc.strerror or exc}") from exc
    data: Any
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DraftError(f"{path} is not valid JSON: {exc}") from exc
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DraftError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise DraftError(f"{path} must hold one object (a mapping of configuration fields)")
    return data
