"""Browse request bodies (B5, A10) and results (B6, A11), spec §3, §8, §15.5."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request

from cloudbackup.api.body import decode_json, decode_object
from cloudbackup.api.schemas.times import iso_z
from cloudbackup.domain.browse import (
    AgentAnswer,
    BrowseAsk,
    BrowseResult,
    encode_name,
    requested_path,
)
from cloudbackup.domain.errors import InvalidInput
from cloudbackup.engine.listing import Child


class BrowseBackup(msgspec.Struct, forbid_unknown_fields=True):
    """B5 body: every key is required; `encrypted_password_hex` and `path_encoded` may be null
    (OQ-16)."""

    agent_id: str
    encrypted_password_hex: str | None
    path: str
    path_encoded: str | None


class BrowseHost(msgspec.Struct, forbid_unknown_fields=True):
    """A10 body."""

    path: str
    path_encoded: str | None


def _required(*keys: str) -> dict[str, str]:
    return {key: f"{key} is required." for key in keys}


def parse_backup_browse(request: Request[Any, Any, Any], body: bytes) -> BrowseAsk:
    data = decode_object(
        request,
        body,
        BrowseBackup,
        _required("agent_id", "encrypted_password_hex", "path", "path_encoded"),
    )
    return BrowseAsk(
        path=data.path,
        path_encoded=data.path_encoded,
        agent_id=data.agent_id,
        encrypted_password_hex=data.encrypted_password_hex,
    )


def parse_host_browse(request: Request[Any, Any, Any], body: bytes) -> BrowseAsk:
    data = decode_object(request, body, BrowseHost, _required("path", "path_encoded"))
    return BrowseAsk(path=data.path, path_encoded=data.path_encoded)


class BrowseItem(msgspec.Struct):
    name: str
    name_encoded: str
    bytes: int
    mime_type: str


class AgentId(msgspec.Struct):
    id: str


class BrowseResultOut(msgspec.Struct):
    """The `backup_browsed` / `host_browsed` result (spec B6, A11)."""

    id: str
    time: str | None
    event: str
    agent: AgentId
    request_id: str
    succeeded: bool
    path: str
    path_encoded: str
    items: list[BrowseItem]


def browse_result_out(result: BrowseResult) -> BrowseResultOut:
    row = result.request
    directory = requested_path(BrowseAsk(path=row.path, path_encoded=row.path_encoded))
    path, path_encoded = encode_name(directory.rstrip(b"/") + b"/")
    return BrowseResultOut(
        id=str(row.event_id),
        time=iso_z(result.time),
        event=result.event,
        agent=AgentId(row.agent_id),
        request_id=row.id,
        succeeded=bool(row.succeeded),
        path=path,
        path_encoded=path_encoded,
        items=[msgspec.convert(item, BrowseItem) for item in row.items or []],
    )


# -- a remote agent's answer (an extension) ----------------------------------------------------


class AgentBrowseEntry(msgspec.Struct, forbid_unknown_fields=True):
    name_encoded: str  # base64 of the name's bytes
    kind: Literal["dir", "file", "symlink", "other"]
    bytes: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class AgentBrowseAnswer(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT .../agents/{agent_id}/browse-requests/{id}/result``: the listed children (in any
    order; the server sorts, limits and describes them), or ``succeeded: false``."""

    succeeded: bool
    entries: list[AgentBrowseEntry] = msgspec.field(default_factory=list)


def parse_agent_answer(request: Request[Any, Any, Any], body: bytes) -> AgentAnswer:
    data = decode_json(request, body, AgentBrowseAnswer)
    children = []
    for n, entry in enumerate(data.entries):
        try:
            name = base64.b64decode(entry.name_encoded, validate=True)
        except (binascii.Error, ValueError):
            name = b""
        if not name or b"/" in name or b"\x00" in name or name in (b".", b".."):
            raise InvalidInput(
                "Validation failed.", [f"entries/{n}/name_encoded must be base64 of a name."]
            )
        children.append(Child(name, entry.kind, entry.bytes))
    return AgentAnswer(data.succeeded, sorted(children, key=lambda child: child.name))
