"""The API's publish path writes the very message Celery would (``cloudbackup.queue.redis_messages``)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
import redis

from cloudbackup.queue.names import AGENT_HEADER, PUBLISHED_HEADER, RUN_BACKUP_TASK
from cloudbackup.queue.publishing import (
    AsyncCeleryDispatcher,
    CeleryDispatcher,
    PinnedAgents,
    ThreadedDispatcher,
    async_dispatcher,
)
from cloudbackup.queue.redis_messages import RedisTaskPublisher, encode_task_message
from cloudbackup.settings import Settings
from factories.private_services import free_port
from factories.runs import Recorder

# Values that differ between any two messages, by design.
PER_MESSAGE = {"id", "root_id", "origin", PUBLISHED_HEADER}
PER_MESSAGE_PROPERTIES = {"correlation_id", "delivery_tag", "reply_to"}


def queued(settings: Settings, queue: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(settings.broker_url)
    return [json.loads(raw) for raw in client.lrange(queue, 0, -1)]


def comparable(message: dict[str, Any]) -> dict[str, Any]:
    headers = {k: v for k, v in message["headers"].items() if k not in PER_MESSAGE}
    properties = {k: v for k, v in message["properties"].items() if k not in PER_MESSAGE_PROPERTIES}
    body = json.loads(base64.b64decode(message["body"]))
    return {**message, "headers": headers, "properties": properties, "body": body}


def test_our_message_is_the_one_celery_writes(settings: Settings) -> None:
    dispatcher = CeleryDispatcher.from_settings(settings)
    dispatcher.pins = None
    queue = dispatcher.queue_for("backup", None)
    dispatcher.publish("backup", "b-1", agent_id="a-1")
    (celery_message,) = queued(settings, queue)
    redis.Redis.from_url(settings.broker_url).delete(queue)

    headers = {PUBLISHED_HEADER: 1.0, AGENT_HEADER: "a-1"}
    ours = json.loads(encode_task_message(RUN_BACKUP_TASK, ["b-1"], queue, headers))

    assert comparable(ours) == comparable(celery_message)
    assert (
        ours["headers"]["id"] == ours["headers"]["root_id"] == ours["properties"]["correlation_id"]
    )


def test_each_message_has_its_own_task_id_and_delivery_tag() -> None:
    first, second = (
        json.loads(encode_task_message(RUN_BACKUP_TASK, ["b"], "q", {})) for _ in range(2)
    )
    assert first["headers"]["id"] != second["headers"]["id"]
    assert first["properties"]["delivery_tag"] != second["properties"]["delivery_tag"]


def test_the_async_dispatcher_routes_like_the_celery_one(settings: Settings) -> None:
    dispatcher = CeleryDispatcher.from_settings(settings)
    dispatcher.pins = PinnedAgents(lambda: frozenset({"pinned"}), ttl=60)
    publisher = async_dispatcher(dispatcher)
    assert isinstance(publisher, AsyncCeleryDispatcher)

    async def publish_both() -> list[bool]:
        try:
            return [
                await publisher.publish("backup", "b-1", agent_id="pinned"),
                await publisher.publish("backup", "b-2", agent_id="shared"),
                await publisher.publish("cleanup", "c-1", agent_id="pinned"),
            ]
        finally:
            await publisher.close()

    assert asyncio.run(publish_both()) == [True, True, True]
    names = dispatcher.names
    (pinned,) = queued(settings, names.agent("pinned"))
    (shared,) = queued(settings, names.manual)
    (cleanup,) = queued(settings, names.maintenance)
    assert pinned["headers"][AGENT_HEADER] == "pinned"
    assert json.loads(base64.b64decode(shared["body"]))[0] == ["b-2"]
    assert cleanup["headers"]["task"] == "cloudbackup.run_cleanup"


def test_a_broker_that_is_down_makes_publish_say_false(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher = CeleryDispatcher.from_settings(settings)
    dispatcher.pins = None
    down = AsyncCeleryDispatcher(
        dispatcher, RedisTaskPublisher(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    )

    async def publish() -> bool:
        try:
            return await down.publish("backup", "b-1")
        finally:
            await down.close()

    assert asyncio.run(publish()) is False
    assert "the sweeper will retry" in caplog.text


def test_any_other_dispatcher_runs_in_a_thread() -> None:
    recorder = Recorder()
    threaded = async_dispatcher(recorder)
    assert isinstance(threaded, ThreadedDispatcher)
    assert asyncio.run(threaded.publish("backup", "b-1", agent_id="a-1")) is True
    assert recorder.published == [("backup", "b-1", "a-1")]
