"""Cleanup request/response structs (spec §5, §6) and their mapping from table rows.

Field order is the order of the spec's cleanup table; msgspec keeps it when encoding. A
cleanup's error `diagnostics` and every item's `exception` are always null (spec §6).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from cloudbackup.api.body import convert_value, decode_json
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.schemas.backups import ErrorCounts, describe, run_fields
from cloudbackup.api.schemas.common import Link, Ref, from_row
from cloudbackup.api.schemas.run_patch import ErrorsValue, RunPatch, bounded_int
from cloudbackup.domain.cleanups import CleanupErrorItem, CleanupErrors, CleanupUpdate
from cloudbackup.domain.errors import InvalidInput
from cloudbackup.domain.run_states import CLEANUP_MACHINE
from cloudbackup.store.tables import Cleanup, CleanupError

CLEANUP_ERROR_DESCRIPTIONS = {
    "file_missing_blocks": (
        "A vault validation determined that the specified file is missing blocks."
    ),
}


class StartCleanup(msgspec.Struct, forbid_unknown_fields=True):
    """C1 request body."""

    agent_id: str
    state: str


def parse_start(request: Request[Any, Any, Any], body: bytes) -> StartCleanup:
    return decode_json(request, body, StartCleanup)


# -- C4 ---------------------------------------------------------------------------------------


class ReportedCleanupErrorItem(msgspec.Struct, forbid_unknown_fields=True):
    index: int
    path: str
    type: str
    exception: None = None


class ReportedCleanupErrors(msgspec.Struct, forbid_unknown_fields=True):
    """The `/errors` value of a cleanup's final report (spec C4): diagnostics must be null."""

    count: int
    reason: str
    diagnostics: None = None
    items: list[ReportedCleanupErrorItem] = msgspec.field(name="list", default_factory=list)


def _cleanup_errors(reported: ReportedCleanupErrors) -> CleanupErrors:
    return CleanupErrors(
        count=reported.count,
        reason=reported.reason,
        items=[CleanupErrorItem(i.index, i.path, i.type) for i in reported.items],
    )


def _set_snapshot_ids(update: CleanupUpdate, value: Any, path: str) -> None:
    ids = convert_value(value, list[int], path)
    if any(i < 1 for i in ids):
        raise InvalidInput("Validation failed.", ["/snapshot_ids must be positive."])
    update.snapshot_ids = [bounded_int(i, f"{path}/{n}", low=1) for n, i in enumerate(ids)]


CLEANUP_PATCH = RunPatch(
    machine=CLEANUP_MACHINE,
    new_update=CleanupUpdate,
    counters=frozenset({"/bytes_before", "/bytes_after"}),
    errors=ErrorsValue(ReportedCleanupErrors, _cleanup_errors),
    own_paths={"/snapshot_ids": _set_snapshot_ids},
)


# -- responses --------------------------------------------------------------------------------


class CleanupErrorsSummary(ErrorCounts):
    diagnostics: str | None
    links: list[Link]


class CleanupOut(msgspec.Struct):
    project_id: str
    id: str
    agent: Ref
    state: str
    started_time: str | None
    ended_time: str | None
    snapshot_ids: list[int]
    errors: CleanupErrorsSummary
    bytes_before: int
    bytes_after: int
    links: list[Link]


class CleanupList(msgspec.Struct):
    cleanups: list[CleanupOut]
    links: list[Link]


class CleanupErrorItemOut(msgspec.Struct):
    index: int
    path: str
    type: str
    description: str
    exception: None


class CleanupErrorListOut(ErrorCounts):
    diagnostics: None
    items: list[CleanupErrorItemOut] = msgspec.field(name="list")
    links: list[Link] = msgspec.field(default_factory=list)


def cleanup_out(row: Cleanup, links: LinkBuilder) -> CleanupOut:
    return from_row(
        CleanupOut,
        row,
        **run_fields(row, links, "cleanups", summary=CleanupErrorsSummary),
        agent=links.ref("agents", row.agent_id),
        snapshot_ids=list(row.snapshot_ids or []),
    )


def cleanup_errors_out(
    row: Cleanup, items: list[CleanupError], links: LinkBuilder
) -> CleanupErrorListOut:
    """ER3 (spec §6): like ER1/ER2, with `diagnostics` and every `exception` null."""
    return CleanupErrorListOut(
        count=row.errors_count,
        reason=row.errors_reason,
        diagnostics=None,
        items=[
            CleanupErrorItemOut(
                index=item.index,
                path=item.path,
                type=item.type,
                description=describe(item.type, CLEANUP_ERROR_DESCRIPTIONS),
                exception=None,
            )
            for item in items
        ],
        links=[links.link("self", "cleanups", row.id, "errors")],
    )
