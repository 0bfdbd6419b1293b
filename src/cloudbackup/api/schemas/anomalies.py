"""Anomalies of the ransomware guard (an API extension): their shape and the dismissal patch."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from cloudbackup.api.body import convert_value, decode_patch
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.schemas.common import Link, from_row
from cloudbackup.api.schemas.times import iso_z
from cloudbackup.domain.anomalies import DISMISSED
from cloudbackup.domain.errors import InvalidInput
from cloudbackup.store.tables import Anomaly


class AnomalyOut(msgspec.Struct):
    """One anomaly: the backup it is about, what was measured, and whether it still holds."""

    id: str
    backup_id: str
    configuration_id: str
    agent_id: str
    detected_time: str | None
    state: str
    files_compared: int
    files_changed: int
    files_deleted: int
    changed_ratio: float
    deleted_ratio: float
    new_plain_bytes: int
    compressed_size_ratio: float
    history_compressed_size_ratio: float | None
    dismissed_time: str | None
    links: list[Link]


class AnomalyList(msgspec.Struct):
    anomalies: list[AnomalyOut]
    links: list[Link]


def anomaly_out(row: Anomaly, links: LinkBuilder) -> AnomalyOut:
    return from_row(
        AnomalyOut,
        row,
        detected_time=iso_z(row.detected_time),
        dismissed_time=iso_z(row.dismissed_time),
        links=[
            links.link("self", "anomalies", row.id),
            links.link("backup", "backups", row.backup_id),
            links.link("configuration", "configurations", row.configuration_id),
        ],
    )


def parse_dismissal(request: Request[Any, Any, Any], body: bytes) -> None:
    """The one PATCH an anomaly takes: ``[{"op": "replace", "path": "/state", "value":
    "dismissed"}]`` (400 otherwise)."""
    for op in decode_patch(request, body, frozenset({"replace"})):
        if op.path != "/state":
            raise InvalidInput("Validation failed.", [f"{op.path} cannot be changed; only /state."])
        value = convert_value(op.value, str, op.path)
        if value != DISMISSED:
            raise InvalidInput(
                "Validation failed.", [f"/state can only be set to {DISMISSED!r}, not {value!r}."]
            )
