"""The configuration form: its fields as the browser sends them, read from a configuration, and
turned into the API's CF1 body or CF4 changes.

Nothing here decides whether a configuration is acceptable: the API does, and its
``message``/``errors`` are shown next to the form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

from cloudbackup.client import format as fmt
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

WEEKDAY_CHOICES = list(zip(WEEKDAYS, DAY_NAMES, strict=True))


@lru_cache(maxsize=1)
def time_zones() -> list[str]:
    return sorted(available_timezones())


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
