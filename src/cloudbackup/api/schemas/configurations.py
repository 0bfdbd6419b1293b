"""Configuration request/response structs (spec §7.1, §16) and their mapping from table rows.

Field order is the order of the spec's configuration table; msgspec keeps it when encoding. The
list form (CF2, A8) leaves out `inclusions`, `exclusions`, `notifications` and `deleted`, and
names the item's own link `full` (OQ-21).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Request

from cloudbackup.api.body import convert_value, decode_object, decode_patch
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.schemas.common import Link, Ref
from cloudbackup.domain.configurations import (
    ConfigurationDraft,
    Notification,
    PathItem,
    ScheduleInput,
    next_scheduled_time,
)
from cloudbackup.domain.errors import InvalidInput
from cloudbackup.domain.schedules import schedule_time
from cloudbackup.store.tables import Configuration, utcnow

# -- CF1 request ------------------------------------------------------------------------------


class RetentionIn(msgspec.Struct, forbid_unknown_fields=True):
    days: int


class CreateConfiguration(msgspec.Struct, forbid_unknown_fields=True):
    """CF1 request body: every key is required (spec §16); `schedule` may be null."""

    agent_id: str
    name: str
    enabled: bool
    schedule: ScheduleInput | None
    retention: RetentionIn
    inclusions: list[PathItem]
    exclusions: list[PathItem]
    notifications: list[Notification]


CREATE_REQUIRED = {
    key: f"{key} is required."
    for key in (
        "agent_id",
        "name",
        "enabled",
        "schedule",
        "retention",
        "inclusions",
        "exclusions",
        "notifications",
    )
}


def parse_create(request: Request[Any, Any, Any], body: bytes) -> tuple[str, ConfigurationDraft]:
    data = decode_object(request, body, CreateConfiguration, CREATE_REQUIRED)
    return data.agent_id, ConfigurationDraft(
        name=data.name,
        enabled=data.enabled,
        schedule=data.schedule,
        retention_days=data.retention.days,
        inclusions=tuple(data.inclusions),
        exclusions=tuple(data.exclusions),
        notifications=tuple(data.notifications),
    )


# -- CF4 request ------------------------------------------------------------------------------

# path -> (draft field, type of the value)
PATCH_PATHS: dict[str, tuple[str, Any]] = {
    "/name": ("name", str),
    "/enabled": ("enabled", bool),
    "/schedule": ("schedule", ScheduleInput | None),
    "/retention/days": ("retention_days", int),
    "/inclusions": ("inclusions", list[PathItem]),
    "/exclusions": ("exclusions", list[PathItem]),
    "/notifications": ("notifications", list[Notification]),
}


def parse_patch(request: Request[Any, Any, Any], body: bytes) -> dict[str, Any]:
    """CF4: `replace` operations on the writable paths, as draft field -> new value."""
    changes: dict[str, Any] = {}
    for op in decode_patch(request, body, frozenset({"replace"})):
        if op.path not in PATCH_PATHS:
            raise InvalidInput(
                "Validation failed.",
                [f"{op.path} cannot be changed; writable paths are {', '.join(PATCH_PATHS)}."],
            )
        field, type_ = PATCH_PATHS[op.path]
        value = convert_value(op.value, type_, op.path)
        changes[field] = tuple(value) if isinstance(value, list) else value
    return changes


# -- responses --------------------------------------------------------------------------------


class ScheduleOut(msgspec.Struct):
    start: str
    recurrence: list[str]
    time_zone: str


class RetentionOut(msgspec.Struct):
    days: int


class NextOut(msgspec.Struct):
    scheduled_time: str | None


class BackupsOut(msgspec.Struct):
    last_completed: Ref | None
    next: NextOut


class ConfigurationHead(msgspec.Struct):
    """The members both forms of a configuration begin with, in the spec's order."""

    project_id: str
    id: str
    agent: Ref
    name: str
    enabled: bool
    schedule: ScheduleOut | None
    retention: RetentionOut


class ConfigurationOut(ConfigurationHead):
    """Detail form (CF1, CF3)."""

    inclusions: list[PathItem]
    exclusions: list[PathItem]
    notifications: list[Notification]
    deleted: bool
    backups: BackupsOut
    links: list[Link]


class ConfigurationSummary(ConfigurationHead):
    """List form (CF2, A8)."""

    backups: BackupsOut
    links: list[Link]


class ConfigurationList(msgspec.Struct):
    configurations: list[ConfigurationSummary]


def _schedule(row: Configuration) -> ScheduleOut | None:
    s = row.schedule
    return None if s is None else ScheduleOut(s["start"], list(s["recurrence"]), s["time_zone"])


def _backups(row: Configuration, links: LinkBuilder, now: datetime) -> BackupsOut:
    due = next_scheduled_time(row, now)
    return BackupsOut(
        last_completed=None
        if row.last_completed_backup_id is None
        else links.ref("backups", row.last_completed_backup_id),
        next=NextOut(scheduled_time=None if due is None else schedule_time(due)),
    )


def _links(row: Configuration, links: LinkBuilder, own_rel: str) -> list[Link]:
    return [
        links.link(own_rel, "configurations", row.id),
        links.link("activities", "configurations", row.id, "activities"),
        links.link("events", "configurations", row.id, "events"),
    ]


def _members(row: Configuration, links: LinkBuilder, now: datetime, own_rel: str) -> dict[str, Any]:
    """What CF3 and each item of CF2 show alike."""
    return {
        "project_id": row.project_id,
        "id": row.id,
        "agent": links.ref("agents", row.agent_id),
        "name": row.name,
        "enabled": row.enabled,
        "schedule": _schedule(row),
        "retention": RetentionOut(row.retention_days),
        "backups": _backups(row, links, now),
        "links": _links(row, links, own_rel),
    }


def configuration_out(row: Configuration, links: LinkBuilder) -> ConfigurationOut:
    """CF1/CF3 (the next scheduled time as of now)."""
    draft = ConfigurationDraft.of(row)
    return ConfigurationOut(
        **_members(row, links, utcnow(), "self"),
        inclusions=list(draft.inclusions),
        exclusions=list(draft.exclusions),
        notifications=list(draft.notifications),
        deleted=row.deleted,
    )


def configuration_summary(
    row: Configuration, links: LinkBuilder, now: datetime
) -> ConfigurationSummary:
    return ConfigurationSummary(**_members(row, links, now, "full"))


def configuration_list(rows: list[Configuration], links: LinkBuilder) -> ConfigurationList:
    """CF2/A8: every item's next scheduled time as of one same now."""
    now = utcnow()
    return ConfigurationList([configuration_summary(row, links, now) for row in rows])
