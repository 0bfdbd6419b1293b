"""Backup request/response structs (spec §3) and their mapping from table rows.

Field order is the order of the seed's example body; msgspec keeps it when encoding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.schemas.common import Link, Ref, from_row
from cloudbackup.api.schemas.run_patch import ErrorsValue, RunPatch, bounded_int
from cloudbackup.api.schemas.times import iso_z
from cloudbackup.domain.backups import BackupUpdate, ErrorItem, ErrorReport
from cloudbackup.domain.run_states import BACKUP_MACHINE
from cloudbackup.store.tables import (
    Backup,
    BackupError,
    Cleanup,
    Drill,
    DrillError,
    Restore,
    RestoreError,
)

SummaryT = TypeVar("SummaryT")

ERROR_DESCRIPTIONS = {
    "file_or_folder_missing": (
        "The item was found during the search but was missing when we tried to back it up."
    ),
    "inclusion_missing": "The item did not exist when the backup started.",
    "file_unreadable": "The item could not be read (permission denied or I/O error).",
}


class StartBackup(msgspec.Struct, forbid_unknown_fields=True):
    """B1 request body."""

    configuration_id: str
    state: str


# What a run's errors begin with, in its summary (``errors``) and in its list (ER1-ER3).
class ErrorCounts(msgspec.Struct):
    count: int
    reason: str


class ErrorsSummary(ErrorCounts):
    diagnostics: str
    links: list[Link]


class BackupOut(msgspec.Struct):
    project_id: str
    id: str
    agent: Ref
    configuration: Ref
    state: str
    started_time: str | None
    ended_time: str | None
    snapshot_id: int | None
    errors: ErrorsSummary
    files_searched: int
    files_backed_up: int
    bytes_searched: int
    bytes_backed_up: int
    bytes_in_db: int
    bandwidth_avg_bps: int
    restorable: bool
    links: list[Link]


class BackupList(msgspec.Struct):
    backups: list[BackupOut]
    links: list[Link]


class ExceptionOut(msgspec.Struct):
    code: int | None
    description: str | None
    details: str  # a string, as in the reference sample: empty when there is nothing to add


class ErrorItemOut(msgspec.Struct):
    index: int
    path: str
    type: str
    description: str
    exception: ExceptionOut | None


class ErrorListOut(ErrorCounts):
    diagnostics: str
    items: list[ErrorItemOut] = msgspec.field(name="list")
    links: list[Link] = msgspec.field(default_factory=list)


class ReportedException(msgspec.Struct, forbid_unknown_fields=True):
    code: int
    description: str
    details: str


class ReportedErrorItem(msgspec.Struct, forbid_unknown_fields=True):
    index: int
    path: str
    type: str
    exception: ReportedException | None = None


class ReportedErrors(msgspec.Struct, forbid_unknown_fields=True):
    """The `/errors` value of an agent's final report (spec B4)."""

    count: int
    reason: str
    diagnostics: str
    items: list[ReportedErrorItem] = msgspec.field(name="list", default_factory=list)


def error_report(reported: ReportedErrors) -> ErrorReport:
    """The domain's form of an agent's ``/errors`` (backups and restores report the same)."""
    return ErrorReport(
        count=reported.count,
        reason=reported.reason,
        diagnostics=reported.diagnostics,
        items=[
            ErrorItem(
                index=item.index,
                path=item.path,
                type=item.type,
                exception_code=item.exception.code if item.exception else None,
                exception_description=item.exception.description if item.exception else None,
                exception_details=item.exception.details if item.exception else None,
            )
            for item in reported.items
        ],
    )


# The ``/errors`` of a backup's, a restore's or a drill's report.
AGENT_ERRORS = ErrorsValue(ReportedErrors, error_report)


def _set_snapshot_id(update: BackupUpdate, value: Any, path: str) -> None:
    update.snapshot_id = bounded_int(value, path, low=1)


BACKUP_PATCH = RunPatch(
    machine=BACKUP_MACHINE,
    new_update=BackupUpdate,
    counters=frozenset(
        {
            "/files_searched",
            "/files_backed_up",
            "/bytes_searched",
            "/bytes_backed_up",
            "/bytes_in_db",
            "/bandwidth_avg_bps",
        }
    ),
    errors=AGENT_ERRORS,
    own_paths={"/snapshot_id": _set_snapshot_id},
)


def backup_out(row: Backup, links: LinkBuilder) -> BackupOut:
    return from_row(
        BackupOut,
        row,
        **run_fields(row, links, "backups"),
        agent=links.ref("agents", row.agent_id),
        configuration=links.ref("configurations", row.configuration_id),
    )


def run_fields(
    row: Backup | Restore | Cleanup | Drill,
    links: LinkBuilder,
    collection: str,
    own: str = "self",
    summary: Callable[[int, str, Any, list[Link]], Any] = ErrorsSummary,
) -> dict[str, Any]:
    """The members every run shows (B3, R3, C3, a drill): ids, state, times, the errors summary
    (``summary``: the kind's struct) and the links (``own``: `self`, or `full` in a list)."""
    return {
        "project_id": row.project_id,
        "id": row.id,
        "state": row.state,
        "started_time": iso_z(row.started_time),
        "ended_time": iso_z(row.ended_time),
        "errors": run_errors(summary, row, links, collection),
        "links": run_links(links, collection, row.id, own),
    }


def run_error_list(
    row: Backup | Restore | Drill,
    items: list[BackupError] | list[RestoreError] | list[DrillError],
    links: LinkBuilder,
    collection: str,
    known: dict[str, str],
) -> ErrorListOut:
    """ER1's shape: the summary, the per-file list described from ``known``, a `self` link."""
    return ErrorListOut(
        count=row.errors_count,
        reason=row.errors_reason,
        diagnostics=row.errors_diagnostics,
        items=[error_item_out(item, known) for item in items],
        links=[links.link("self", collection, row.id, "errors")],
    )


def error_list_out(row: Backup, items: list[BackupError], links: LinkBuilder) -> ErrorListOut:
    return run_error_list(row, items, links, "backups", ERROR_DESCRIPTIONS)


def describe(error_type: str, known: dict[str, str]) -> str:
    """The human text of an error type (spec §2.3 `description`)."""
    return known.get(error_type, error_type.replace("_", " ").capitalize() + ".")


def error_item_out(
    item: BackupError | RestoreError | DrillError, known: dict[str, str]
) -> ErrorItemOut:
    """One per-file error of a backup or a restore (ER1/ER2), described from ``known``."""
    return ErrorItemOut(
        index=item.index,
        path=item.path,
        type=item.type,
        description=describe(item.type, known),
        exception=None
        if item.exception_code is None and item.exception_description is None
        else ExceptionOut(
            code=item.exception_code,
            description=item.exception_description,
            details=item.exception_details or "",
        ),
    )


def run_errors(
    summary: Callable[[int, str, Any, list[Link]], SummaryT],
    row: Backup | Restore | Cleanup | Drill,
    links: LinkBuilder,
    collection: str,
) -> SummaryT:
    """A run's errors summary (``summary``: the kind's struct) with the `full` list's link."""
    full = [links.link("full", collection, row.id, "errors")]
    return summary(row.errors_count, row.errors_reason, row.errors_diagnostics, full)


def run_links(links: LinkBuilder, collection: str, run_id: str, own: str = "self") -> list[Link]:
    """A run's own link (``own``: `self`, or `full` in a list) and its events' link."""
    return [links.link(own, collection, run_id), links.link("events", collection, run_id, "events")]
