"""Bodies of the event POSTs: EV1 (project activation) and EV3 (an agent's events)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from cloudbackup.api.body import decode_object
from cloudbackup.domain.event_stream import AgentEvent


class ActivateIn(msgspec.Struct, forbid_unknown_fields=True):
    event: str
    mode: str


class AgentEventIn(msgspec.Struct, forbid_unknown_fields=True):
    event: str
    mode: str | None = None
    request_id: str | None = None


def parse_activation(request: Request[Any, Any, Any], body: bytes) -> ActivateIn:
    return decode_object(
        request,
        body,
        ActivateIn,
        {"event": "event is required.", "mode": "mode is required: idle, active or real_time."},
    )


def parse_agent_event(request: Request[Any, Any, Any], body: bytes) -> AgentEvent:
    data = decode_object(request, body, AgentEventIn, {"event": "event is required."})
    return AgentEvent(event=data.event, mode=data.mode, request_id=data.request_id)
