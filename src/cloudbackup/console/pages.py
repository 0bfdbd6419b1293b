"""What the console pages show, read from the API, and the forms they post, turned into API bodies.

Nothing here decides whether a configuration or a restore is acceptable: the API does, and its
``message``/``errors`` are shown next to the form.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

from cloudbackup.client import format as fmt
from cloudbackup.client.api import FINAL_STATES, ApiError, AsyncApiClient
from cloudbackup.client.drafts import (
    DAY_NAMES,
    WEEKDAYS,
    DraftError,
    configuration_body,
    notifications,
    path_items,
    path_text,
    rrule,
    rule_parts,
)
from cloudbackup.client.progress import is_progress_event

BACKUP_STATES = (
    "start_requested",
    "queued",
    "preparing",
    "in_progress",
    "stop_requested",
    "completed",
    "completed_with_errors",
    "failed",
    "stopped",
    "skipped",
    "missed",
    "start_scheduled",
)
RESTORE_FINAL_STATES = frozenset({"completed", "completed_with_errors", "failed", "stopped"})
MAX_ROWS = 50
MAX_PAGES = 5  # B2 has no state/agent filter: read at most this many pages of 100 to filter
MAX_PROGRESS_LOOKUPS = 10


@dataclass
class Problem:
    """An API refusal shown on a page: its status, message and per-field errors."""

    status: int
    message: str
    errors: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, exc: ApiError) -> Problem:
        return cls(exc.status, exc.message, exc.errors)


def is_final(kind: str, state: str | None) -> bool:
    return (state or "") in (FINAL_STATES if kind == "backups" else RESTORE_FINAL_STATES)


async def names(api: AsyncApiClient) -> tuple[dict[str, str], dict[str, str]]:
    """Configuration id -> name and agent id -> name, for tables and selects."""
    configs, agents = await asyncio.gather(api.list_configurations(), api.list_agents())
    return (
        {c["id"]: c.get("name", "") for c in configs["configurations"]},
        {a["id"]: a.get("name", "") for a in agents["agents"]},
    )


def progress_view(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Percent, rate and ETA from the newest ``*_progress`` events (newest first)."""
    progress = [e for e in events if is_progress_event(e)]
    if not progress:
        return None
    newest = progress[0]
    done, total = newest.get("bytes_completed") or 0, newest.get("total_bytes") or 0
    view: dict[str, Any] = {
        "done": done,
        "total": total,
        "percent": int(100 * done / total) if total else None,
        "rate": None,
        "eta": None,
    }
    if len(progress) > 1:
        t1, t0 = fmt.parse_time(newest.get("time")), fmt.parse_time(progress[1].get("time"))
        before = progress[1].get("bytes_completed") or 0
        if t1 and t0 and t1 > t0 and done >= before:
            view["rate"] = (done - before) / (t1 - t0).total_seconds()
            if view["rate"]:
                view["eta"] = max(total - done, 0) / view["rate"]
    return view


async def latest_progress(api: AsyncApiClient, kind: str, run_id: str) -> dict[str, Any] | None:
    try:
        page = await api.list_events((kind, run_id), sort_dir="desc", limit=30)
    except ApiError:
        return None
    return progress_view(page.get("events") or [])


async def backup_rows(
    api: AsyncApiClient, *, state: str, agent: str, configuration: str
) -> list[dict[str, Any]]:
    """The newest backups matching the filters, with progress for the running ones."""
    rows: list[dict[str, Any]] = []
    marker: str | None = None
    for _ in range(MAX_PAGES):
        page = await api.list_backups(
            marker=marker, limit=100, configuration_id=configuration or None
        )
        items = page["backups"]
        rows += [
            b
            for b in items
            if (not state or b.get("state") == state)
            and (not agent or fmt.ref_id(b.get("agent")) == agent)
        ]
        more = any(link.get("rel") == "next" for link in page.get("links") or [])
        if len(rows) >= MAX_ROWS or not more or not items:
            break
        marker = items[-1]["id"]
    rows = rows[:MAX_ROWS]
    running = [r for r in rows if r.get("state") in ("in_progress", "stop_requested")]
    found = await asyncio.gather(
        *(latest_progress(api, "backups", r["id"]) for r in running[:MAX_PROGRESS_LOOKUPS])
    )
    for row, progress in zip(running, found, strict=False):
        row["progress"] = progress
    for row in rows:
        row["final"] = is_final("backups", row.get("state"))
    return rows


async def all_events(api: AsyncApiClient, kind: str, run_id: str) -> list[dict[str, Any]]:
    """Every event of one run, oldest first (pages of 100, at most 20 pages)."""
    events: list[dict[str, Any]] = []
    marker: str | None = None
    for _ in range(20):
        page = await api.list_events((kind, run_id), marker=marker, limit=100, sort_dir="asc")
        batch = page.get("events") or []
        events += batch
        if len(batch) < 100:
            break
        marker = str(batch[-1]["id"])
    return events


def timeline(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events people read: state changes and requests, not every progress tick."""
    return [e for e in events if not is_progress_event(e)]


@lru_cache(maxsize=1)
def time_zones() -> list[str]:
    return sorted(available_timezones())


# -- the configuration form -------------------------------------------------------------------
@dataclass
class ConfigForm:
    """The fields of the create/edit form, as strings the way the browser sends them."""

    name: str = ""
    agent_id: str = ""
    enabled: bool = True
    inclusions: str = ""
    exclusions: str = ""
    schedule_kind: str = "none"  # none | hourly | daily | weekly | custom
    interval: str = "1"
    at: str = "02:00"
    days: list[str] = field(default_factory=list)
    rrule: str = ""
    time_zone: str = "UTC"
    retention_days: str = "30"
    emails: str = ""
    notify_success: bool = False

    @classmethod
    def from_form(cls, form: Any) -> ConfigForm:
        def text(name: str, default: str = "") -> str:
            return str(form.get(name) or default).strip()

        return cls(
            name=text("name"),
            agent_id=text("agent_id"),
            enabled=form.get("enabled") == "on",
            inclusions=text("inclusions"),
            exclusions=text("exclusions"),
            schedule_kind=text("schedule_kind", "none"),
            interval=text("interval", "1"),
            at=text("at", "02:00"),
            days=[str(d) for d in form.getall("days", [])],
            rrule=text("rrule"),
            time_zone=text("time_zone", "UTC"),
            retention_days=text("retention_days", "30"),
            emails=text("emails"),
            notify_success=form.get("notify_success") == "on",
        )

    @classmethod
    def from_api(cls, config: dict[str, Any]) -> ConfigForm:
        result = cls(
            name=config.get("name", ""),
            agent_id=fmt.ref_id(config.get("agent")) or "",
            enabled=bool(config.get("enabled")),
            inclusions="\n".join(path_text(i) for i in config.get("inclusions") or []),
            exclusions="\n".join(path_text(i) for i in config.get("exclusions") or []),
            retention_days=str((config.get("retention") or {}).get("days", 30)),
            emails="\n".join(str(n.get("destination")) for n in config.get("notifications") or []),
            notify_success=any(n.get("on_success") for n in config.get("notifications") or []),
        )
        schedule = config.get("schedule")
        if schedule:
            result.time_zone = schedule.get("time_zone", "UTC")
            result.rrule = (schedule.get("recurrence") or [""])[0]
            result.schedule_kind = "custom"
            parts = rule_parts(result.rrule)
            simple = set(parts) <= {"FREQ", "INTERVAL", "BYHOUR", "BYMINUTE", "BYDAY"}
            freq = parts.get("FREQ", "")
            timed = freq != "HOURLY" and "BYHOUR" in parts and "BYMINUTE" in parts
            if simple and ((freq == "HOURLY" and "BYMINUTE" not in parts) or timed):
                result.schedule_kind = freq.lower()
                result.interval = parts.get("INTERVAL", "1")
                if timed:
                    result.at = f"{int(parts['BYHOUR']):02d}:{int(parts['BYMINUTE']):02d}"
                result.days = parts.get("BYDAY", "").split(",") if "BYDAY" in parts else []
        return result

    def schedule(self) -> dict[str, Any] | None:
        """The CF1 ``schedule`` the form describes (``None`` for manual only)."""
        if self.schedule_kind == "none":
            return None
        if self.schedule_kind == "custom":
            if not self.rrule:
                raise DraftError("Write the custom schedule as an RRULE, e.g. RRULE:FREQ=HOURLY.")
            return {"recurrence": [self.rrule], "time_zone": self.time_zone}
        if not (self.interval.isascii() and self.interval.isdigit()):
            raise DraftError("The schedule's interval must be a whole number, 1 or more.")
        rule = rrule(self.schedule_kind, int(self.interval), self.at, self.days)
        return {"recurrence": [rule], "time_zone": self.time_zone}

    def retention(self) -> int:
        if not (self.retention_days.isascii() and self.retention_days.isdigit()):
            raise DraftError("Keep backups for a whole number of days (0 keeps them forever).")
        return int(self.retention_days)

    def emails_list(self) -> list[str]:
        return [e for e in self.emails.replace(",", "\n").splitlines() if e.strip()]

    def body(self) -> dict[str, Any]:
        """The CF1 body (raises :class:`DraftError` for fields that do not parse)."""
        return configuration_body(
            agent_id=self.agent_id,
            name=self.name,
            inclusions=path_items(self.inclusions),
            exclusions=path_items(self.exclusions),
            schedule=self.schedule(),
            retention_days=self.retention(),
            emails=self.emails_list(),
            notify_on_success=self.notify_success,
            enabled=self.enabled,
        )

    def changes(self) -> dict[str, Any]:
        """The CF4 replacements for every editable field (the agent cannot change)."""
        return {
            "/name": self.name,
            "/enabled": self.enabled,
            "/schedule": self.schedule(),
            "/retention/days": self.retention(),
            "/inclusions": path_items(self.inclusions),
            "/exclusions": path_items(self.exclusions),
            "/notifications": notifications(self.emails_list(), self.notify_success),
        }


WEEKDAY_CHOICES = list(zip(WEEKDAYS, DAY_NAMES, strict=True))
