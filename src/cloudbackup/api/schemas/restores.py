"""Restore request/response structs (spec §4, §6) and their mapping from table rows.

Field order is the order of the spec's restore table; msgspec keeps it when encoding. The list
form (R2) leaves out `inclusions` and `exclusions` and names the item's own link `full` (OQ-21).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from cloudbackup.api.body import decode_object
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.schemas.backups import (
    AGENT_ERRORS,
    ErrorsSummary,
    run_error_list,
    run_fields,
)
from cloudbackup.api.schemas.common import Link, Ref, from_row
from cloudbackup.api.schemas.run_patch import RunPatch
from cloudbackup.domain.configurations import PathItem
from cloudbackup.domain.restores import RestoreRequest, RestoreUpdate
from cloudbackup.domain.run_states import RESTORE_MACHINE
from cloudbackup.store.tables import Restore, RestoreError

# Restore error types (spec §6 plus the engine's); unknown types get a generated sentence.
RESTORE_ERROR_DESCRIPTIONS = {
    "phx_exception": "The agent experience a problem (Phoenix).",
    "file_or_folder_missing": "The item was not found in the backup.",
    "file_exists": "The item already exists at the destination and overwrite_files is false.",
    "file_unwritable": "The item could not be written at the destination.",
    "blob_missing": "The item's data is missing from the vault.",
    "blob_corrupt": "The item's data in the vault is damaged.",
    "invalid_entry": "The backup's record of the item is invalid.",
}


class StartRestore(msgspec.Struct, forbid_unknown_fields=True):
    """R1 request body (spec R1; only the lower-case `destination_agent_id`, OQ-7)."""

    backup_id: str
    destination_agent_id: str
    destination_path: str | None
    encrypted_password_hex: str | None
    inclusions: list[PathItem]
    exclusions: list[PathItem]
    overwrite_files: bool = False


START_REQUIRED = {
    key: f"{key} is required."
    for key in (
        "backup_id",
        "destination_agent_id",
        "destination_path",
        "encrypted_password_hex",
        "inclusions",
        "exclusions",
    )
}


def parse_start(request: Request[Any, Any, Any], body: bytes) -> RestoreRequest:
    data = decode_object(request, body, StartRestore, START_REQUIRED)
    paths = {"inclusions": tuple(data.inclusions), "exclusions": tuple(data.exclusions)}
    return RestoreRequest(**msgspec.structs.asdict(data) | paths)


# -- R4 ---------------------------------------------------------------------------------------

RESTORE_PATCH = RunPatch(
    machine=RESTORE_MACHINE,
    new_update=RestoreUpdate,
    # The example spellings (OQ-8); the reference table's garbled ones are 400 like any other.
    counters=frozenset({"/files_restored", "/bytes_restored"}),
    errors=AGENT_ERRORS,
)


# -- responses --------------------------------------------------------------------------------


class PathItemOut(msgspec.Struct):
    type: str
    path: str


class RestoreOut(msgspec.Struct, kw_only=True):
    project_id: str
    id: str
    backup: Ref
    destination_agent: Ref
    destination_path: str | None
    overwrite_files: bool
    # UNSET (left out of the JSON) in the list form (OQ-21).
    inclusions: list[PathItemOut] | msgspec.UnsetType = msgspec.UNSET
    exclusions: list[PathItemOut] | msgspec.UnsetType = msgspec.UNSET
    state: str
    started_time: str | None
    ended_time: str | None
    errors: ErrorsSummary
    files_restored: int
    bytes_restored: int
    links: list[Link]


class RestoreList(msgspec.Struct):
    restores: list[RestoreOut]
    links: list[Link]


def restore_out(row: Restore, links: LinkBuilder, *, detail: bool = True) -> RestoreOut:
    return from_row(
        RestoreOut,
        row,
        **run_fields(row, links, "restores", "self" if detail else "full"),
        backup=links.ref("backups", row.backup_id),
        destination_agent=links.ref("agents", row.destination_agent_id),
        inclusions=[PathItemOut(i["type"], i["path"]) for i in row.inclusions or []]
        if detail
        else msgspec.UNSET,
        exclusions=[PathItemOut(e["type"], e["path"]) for e in row.exclusions or []]
        if detail
        else msgspec.UNSET,
    )


def restore_list_item(row: Restore, links: LinkBuilder) -> RestoreOut:
    return restore_out(row, links, detail=False)


def restore_errors_out(
    row: Restore, items: list[RestoreError], links: LinkBuilder
) -> dict[str, Any]:
    """ER2 (spec §6): ER1's members (the document has declared it a plain object)."""
    errors = run_error_list(row, items, links, "restores", RESTORE_ERROR_DESCRIPTIONS)
    members: dict[str, Any] = msgspec.to_builtins(errors)
    return members
