"""Drill schedules (issue 14, an API extension): the PUT body and the schedule as shown."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request

from cloudbackup.api.body import decode_object
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.schemas.common import Link, from_row
from cloudbackup.api.schemas.times import iso_z
from cloudbackup.domain.drill_schedules import MAX_EVERY_HOURS, MIN_EVERY_HOURS, ScheduleView
from cloudbackup.store.drill_results import DrillResult

PUT_REQUIRED = {"every_hours": "every_hours is required: hours between drills (1 to 8760)."}


class PutDrillSchedule(msgspec.Struct, forbid_unknown_fields=True):
    every_hours: Any = None  # any JSON here: the domain says what is wrong with the value


class DrillScheduleIn(msgspec.Struct, forbid_unknown_fields=True):
    """The PUT body as documented (``api.openapi``): whole hours between drills."""

    every_hours: Annotated[int, msgspec.Meta(ge=MIN_EVERY_HOURS, le=MAX_EVERY_HOURS)]


class LastDrillOut(msgspec.Struct):
    """The configuration's newest ended drill: its result and measured recovery time (RTO)."""

    id: str
    backup_id: str
    state: str
    ended_time: str | None
    duration_seconds: float | None
    bytes_per_second: int | None
    files_checked: int
    mismatches: int
    links: list[Link]


class DrillScheduleOut(msgspec.Struct):
    configuration_id: str
    every_hours: int
    next_due_time: str | None
    last_fired_time: str | None
    last_drill: LastDrillOut | None
    links: list[Link]


def parse_put(request: Request[Any, Any, Any], body: bytes) -> Any:
    """The PUT body's ``every_hours`` (400 for a missing key, another key or not an object)."""
    return decode_object(request, body, PutDrillSchedule, PUT_REQUIRED).every_hours


def last_drill_out(result: DrillResult, links: LinkBuilder) -> LastDrillOut:
    return from_row(
        LastDrillOut,
        result,
        id=result.drill_id,
        ended_time=iso_z(result.ended_time),
        links=[links.link("full", "drills", result.drill_id)],
    )


def drill_schedule_out(view: ScheduleView, links: LinkBuilder) -> DrillScheduleOut:
    row = view.schedule
    return DrillScheduleOut(
        configuration_id=row.configuration_id,
        every_hours=row.every_hours,
        next_due_time=iso_z(row.next_due_time),
        last_fired_time=iso_z(row.last_fired_time),
        last_drill=None if view.last_drill is None else last_drill_out(view.last_drill, links),
        links=[
            links.link("self", "configurations", row.configuration_id, "drill-schedule"),
            links.link("configuration", "configurations", row.configuration_id),
        ],
    )
