"""Restore drill response structs (issue 14, an API extension) and their mapping from rows.

A drill's per-file list has the shape of ER1 (``count``, ``reason``, ``diagnostics``, ``list``
of items with ``index``, ``path``, ``type``, ``description``, ``exception``).
"""

from __future__ import annotations

import msgspec

from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.schemas.backups import (
    AGENT_ERRORS,
    ErrorListOut,
    ErrorsSummary,
    run_error_list,
    run_fields,
)
from cloudbackup.api.schemas.common import Link, Ref, from_row
from cloudbackup.api.schemas.restores import RESTORE_ERROR_DESCRIPTIONS
from cloudbackup.api.schemas.run_patch import RunPatch
from cloudbackup.domain.drills import DrillUpdate
from cloudbackup.domain.run_states import DRILL_MACHINE
from cloudbackup.store.tables import Drill, DrillError

DRILL_ERROR_DESCRIPTIONS = {
    **RESTORE_ERROR_DESCRIPTIONS,
    "content_mismatch": "The restored item's content differs from what the backup recorded.",
    "file_not_restored": "The item was not found after the restore.",
}

# A user may only ask a drill to stop: the service's own worker reports everything else.
DRILL_PATCH = RunPatch(
    machine=DRILL_MACHINE,
    new_update=DrillUpdate,
    counters=frozenset(),
    errors=AGENT_ERRORS,
)


class DrillOut(msgspec.Struct):
    project_id: str
    id: str
    backup: Ref
    configuration: Ref
    snapshot_id: int
    state: str
    started_time: str | None
    ended_time: str | None
    files_checked: int
    bytes_checked: int
    mismatches: int
    duration_seconds: float | None
    bytes_per_second: int | None
    errors: ErrorsSummary
    links: list[Link]


class DrillList(msgspec.Struct):
    drills: list[DrillOut]
    links: list[Link]


def drill_out(row: Drill, links: LinkBuilder, own: str = "self") -> DrillOut:
    return from_row(
        DrillOut,
        row,
        **run_fields(row, links, "drills", own),
        backup=links.ref("backups", row.backup_id),
        configuration=links.ref("configurations", row.configuration_id),
    )


def drill_list_item(row: Drill, links: LinkBuilder) -> DrillOut:
    return drill_out(row, links, "full")


def drill_errors_out(row: Drill, items: list[DrillError], links: LinkBuilder) -> ErrorListOut:
    """The files a drill could not restore as the backup recorded them (ER1's shape)."""
    return run_error_list(row, items, links, "drills", DRILL_ERROR_DESCRIPTIONS)
