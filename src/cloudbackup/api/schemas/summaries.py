"""Summary settings bodies (spec §13)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from cloudbackup.api.body import decode_object
from cloudbackup.domain.summaries import Recipient, Summaries


class RecipientIn(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    destination: str


class SummariesIn(msgspec.Struct, forbid_unknown_fields=True):
    notifications: list[RecipientIn]
    daily: bool = False  # spec S1 [inf]: a missing flag is false
    weekly: bool = False


class RecipientOut(msgspec.Struct):
    type: str
    destination: str


class SummariesOut(msgspec.Struct):
    daily: bool
    weekly: bool
    notifications: list[RecipientOut]


def parse_summaries(request: Request[Any, Any, Any], body: bytes) -> Summaries:
    data = decode_object(
        request, body, SummariesIn, {"notifications": "notifications is required."}
    )
    return Summaries(
        daily=data.daily,
        weekly=data.weekly,
        notifications=tuple(Recipient(n.type, n.destination) for n in data.notifications),
    )


def summaries_out(settings: Summaries) -> SummariesOut:
    return SummariesOut(
        daily=settings.daily,
        weekly=settings.weekly,
        notifications=[RecipientOut(n.type, n.destination) for n in settings.notifications],
    )
