"""Logfile rendering (spec §8.2) and the A15 patch."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from cloudbackup.api.body import convert_value, decode_patch
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.schemas.common import Link
from cloudbackup.api.schemas.times import iso_z
from cloudbackup.domain.errors import InvalidInput
from cloudbackup.domain.logfiles import COMPLETED, object_name
from cloudbackup.store.tables import Logfile


class LogfileOut(msgspec.Struct):
    id: str
    date: str | None
    state: str
    links: list[Link]


class LogfileList(msgspec.Struct):
    logfiles: list[LogfileOut]


def upload_href(links: LinkBuilder, agent_id: str, name: str) -> str:
    """Where an agent puts its log: inside its vault, whose links name it the same way
    (``.../agents/{agent_id}/vault``), since the vault is our object storage."""
    return links.href("agents", agent_id, "vault", name)


def logfile_out(row: Logfile, links: LinkBuilder) -> LogfileOut:
    out = [links.link("self", "agents", row.agent_id, "logfiles", row.id)]
    if row.state == COMPLETED:
        name = object_name(row.agent_id, row.date)
        out.append(Link(href=upload_href(links, row.agent_id, name), rel="logfile"))
    return LogfileOut(id=row.id, date=iso_z(row.date), state=row.state, links=out)


def parse_logfile_patch(request: Request[Any, Any, Any], body: bytes) -> str:
    """A15: ``replace`` of ``/state`` only; the last operation wins. Returns the new state."""
    state = ""
    for op in decode_patch(request, body, frozenset({"replace"})):
        if op.path != "/state":
            raise InvalidInput(
                "Validation failed.", [f"{op.path} cannot be changed; only /state can."]
            )
        state = convert_value(op.value, str, op.path)
    return state
