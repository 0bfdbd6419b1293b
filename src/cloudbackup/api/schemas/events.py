"""Event rendering (spec §10, §15)."""

from __future__ import annotations

from typing import Any

from cloudbackup.api.schemas.times import iso_z
from cloudbackup.store.tables import Event


def event_out(row: Event) -> dict[str, Any]:
    """An event as the API shows it: id (digit string), time, event, then its members."""
    out: dict[str, Any] = {"id": str(row.id), "time": iso_z(row.time), "event": row.event}
    out.update(row.members or {})
    return out
