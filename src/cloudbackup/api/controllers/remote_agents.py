"""What a remote agent needs beyond the v2 API (extension paths under its agent): its event
channel, a long poll (``domain.agent_channel``), and the objects of its own vault
(``domain.vault_objects``). Only the agent's own A9 token may use either."""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, delete, get, head, put
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, RawBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from cloudbackup.api.auth import NEEDS_UPDATE, reporting_agent
from cloudbackup.api.call import Call, Id, Query
from cloudbackup.api.errors import error_response
from cloudbackup.domain.agent_channel import FIRST_MARKER, ChannelService
from cloudbackup.domain.errors import InvalidInput
from cloudbackup.domain.vault_objects import MAX_OBJECT_BYTES, VaultObjectService

Objects = NamedDependency[VaultObjectService]
DEFAULT_WAIT_SECONDS = 25
OBJECT = "/{agent_id:str}/vault/objects/{name:path}"
OCTETS = "application/octet-stream"
_RANGE = re.compile(r"bytes=([0-9]{1,19})-([0-9]{1,19})")


class ChannelEntryOut(msgspec.Struct):
    marker: str
    item: dict[str, Any]


class ChannelOut(msgspec.Struct):
    items: list[ChannelEntryOut]
    marker: str  # the marker to ask after next time


class ObjectInfoOut(msgspec.Struct):
    name: str
    size: int
    mtime_ns: int


class ObjectListOut(msgspec.Struct):
    objects: list[ObjectInfoOut]


def _wait(value: str | None) -> float:
    if value is None:
        return DEFAULT_WAIT_SECONDS
    if not (value.isascii() and value.isdigit()) or int(value) > 60:
        raise InvalidInput("Validation failed.", ["wait must be a number of seconds, 0 to 60."])
    return float(value)


def _range(value: str | None) -> tuple[int, int] | None:
    """``Range: bytes=a-b`` as (offset, length); only one closed range is taken."""
    if value is None:
        return None
    match = _RANGE.fullmatch(value.strip())
    if match is None or int(match[2]) < int(match[1]):
        raise InvalidInput("Validation failed.", ["Range must be one range bytes=first-last."])
    first, last = int(match[1]), int(match[2])
    return first, last - first + 1


def _object(name: str) -> str:
    """The object's name from the path (``{name:path}`` keeps its leading slash)."""
    return name.lstrip("/")


class RemoteAgentController(Controller):
    path = "/v2/{project_id:str}/agents"

    @get("/{agent_id:str}/channel")
    async def read_channel(
        self,
        call: Call,
        agent_id: Id,
        agent_channel: NamedDependency[ChannelService],
        marker: Query = None,
        wait: Query = None,
    ) -> ChannelOut:
        """The agent's work after ``marker``, waiting up to ``wait`` seconds for some."""
        after = marker or FIRST_MARKER
        items = await agent_channel.next_items(
            call.project_id, agent_id, reporting_agent(call.request), after, _wait(wait)
        )
        entries = [ChannelEntryOut(item.marker, item.item) for item in items]
        return ChannelOut(entries, entries[-1].marker if entries else after)

    @get("/{agent_id:str}/vault/objects", sync_to_thread=True)
    def list_vault_objects(
        self, call: Call, agent_id: Id, vault_objects: Objects, prefix: Query = None
    ) -> ObjectListOut:
        caller = reporting_agent(call.request)
        listed = vault_objects.list(call.project_id, agent_id, caller, prefix or "")
        return ObjectListOut([ObjectInfoOut(i.name, i.size, i.mtime_ns) for i in listed])

    @put(
        OBJECT,
        status_code=HTTP_201_CREATED,
        sync_to_thread=True,
        request_max_body_size=MAX_OBJECT_BYTES,
    )
    def put_vault_object(
        self,
        call: Call,
        agent_id: Id,
        name: Id,
        body: RawBody,
        vault_objects: Objects,
        if_none_match: Annotated[
            str | None, HeaderParameter(name="If-None-Match", required=False)
        ] = None,
    ) -> Response[Any]:
        """Write an object; with ``If-None-Match: *`` only if it does not exist (201, or 412)."""
        if_absent = if_none_match is not None
        if if_absent and if_none_match != "*":
            raise InvalidInput("Validation failed.", ["If-None-Match may only be '*'."])
        caller = reporting_agent(call.request)
        name = _object(name)
        if vault_objects.put(call.project_id, agent_id, caller, name, body, if_absent=if_absent):
            return Response(b"", status_code=HTTP_201_CREATED if if_absent else 204)
        return error_response(412, "An object of that name exists already.")

    @get(OBJECT, sync_to_thread=True, media_type=OCTETS)
    def get_vault_object(
        self,
        call: Call,
        agent_id: Id,
        name: Id,
        vault_objects: Objects,
        range_header: Annotated[str | None, HeaderParameter(name="Range", required=False)] = None,
    ) -> Response[bytes]:
        """The object, or the one byte range asked for (206)."""
        byte_range = _range(range_header)
        caller = reporting_agent(call.request)
        data = vault_objects.get(call.project_id, agent_id, caller, _object(name), byte_range)
        return Response(data, media_type=OCTETS, status_code=200 if byte_range is None else 206)

    @head(OBJECT, sync_to_thread=True)
    def vault_object_size(
        self, call: Call, agent_id: Id, name: Id, vault_objects: Objects
    ) -> Response[None]:
        caller = reporting_agent(call.request)
        size = vault_objects.size(call.project_id, agent_id, caller, _object(name))
        return Response(None, headers={"X-Object-Size": str(size)})

    @delete(
        OBJECT,
        status_code=HTTP_204_NO_CONTENT,
        sync_to_thread=True,
        # Agents hold no Delete permission (§1.7); removing their own vault's objects (locks,
        # pruned packs) is part of writing the vault, as for a hosted worker.
        opt=NEEDS_UPDATE,
    )
    def delete_vault_object(
        self, call: Call, agent_id: Id, name: Id, vault_objects: Objects
    ) -> None:
        caller = reporting_agent(call.request)
        vault_objects.delete(call.project_id, agent_id, caller, _object(name))
