"""Remote agents' event channels as Redis streams, one per agent (``domain.agent_channel``).

Workers ``XADD`` work items (:class:`RedisAgentChannel`); the API's long poll ``XREAD BLOCK``s
on the asyncio client (:class:`RedisAgentChannelReader`). Stream ids are the markers. A stream
keeps its last :data:`KEEP_ITEMS` items: an agent that was away longer has its runs re-driven
by the sweeper anyway, with new items.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
import redis
from redis.asyncio import Redis as AsyncRedis

from cloudbackup.domain.agent_channel import MAX_WAIT_SECONDS, ChannelItem
from cloudbackup.queue.redis_messages import is_redis_url

log = logging.getLogger("cloudbackup.queue")

KEEP_ITEMS = 1000
_MARKER = re.compile(r"[0-9]{1,20}(-[0-9]{1,20})?")
_json = msgspec.json.Encoder()


def channel_key(agent_id: str) -> str:
    return f"cloudbackup:agent-channel:{agent_id}"


class RedisAgentChannel:
    """The workers' side: append work items to an agent's stream."""

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        self.redis = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def push(self, agent_id: str, item: dict[str, Any]) -> bool:
        try:
            self.redis.xadd(channel_key(agent_id), {"item": _json.encode(item)}, maxlen=KEEP_ITEMS)
        except redis.RedisError as exc:
            log.warning("could not push to the channel of agent %s: %s", agent_id, exc)
            return False
        return True


class RedisAgentChannelReader:
    """The API's side: the items after a marker, blocking while there are none."""

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        # A blocked XREAD holds its connection for up to the poll's wait: no socket timeout
        # below that.
        self.redis = AsyncRedis.from_url(
            url, socket_timeout=MAX_WAIT_SECONDS + timeout, socket_connect_timeout=timeout
        )

    def valid_marker(self, marker: str) -> bool:
        return bool(_MARKER.fullmatch(marker))

    async def read(
        self, agent_id: str, marker: str, wait_seconds: float, limit: int
    ) -> list[ChannelItem]:
        block = int(wait_seconds * 1000) if wait_seconds > 0 else None
        streams = {channel_key(agent_id): marker}
        answer: Any = await self.redis.xread(streams, count=limit, block=block)  # type: ignore[arg-type]
        items: list[ChannelItem] = []
        for _key, entries in answer or []:
            for entry_id, fields in entries:
                raw = fields.get(b"item")
                if raw is None:
                    continue
                marker_text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                items.append(ChannelItem(marker_text, msgspec.json.decode(raw)))
        return items

    async def close(self) -> None:
        await self.redis.aclose()


def agent_channel(url: str) -> RedisAgentChannel | None:
    """The workers' channel on a Redis broker (None on any other broker)."""
    return RedisAgentChannel(url) if is_redis_url(url) else None


def agent_channel_reader(url: str) -> RedisAgentChannelReader | None:
    """The API's channel reader on a Redis broker (None on any other broker)."""
    return RedisAgentChannelReader(url) if is_redis_url(url) else None
