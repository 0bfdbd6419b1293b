"""A configuration created, changed or deleted is pushed, after its commit, to a remote agent's
channel as a small ``configuration_changed`` item, so the agent reads its working document (A7)
again. Hosted agents and refused changes push nothing; a channel that is away loses the item
(the agent re-reads A7 every few minutes) but never the change."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from cloudbackup.domain.configurations import (
    ConfigurationDraft,
    ConfigurationService,
    Notification,
    PathItem,
)
from cloudbackup.domain.errors import InvalidInput, NotFound
from cloudbackup.domain.roots import RootsPolicy
from cloudbackup.store.db import Database
from cloudbackup.store.tables import Configuration
from factories import rows
from factories.api import PROJECT

DRAFT = ConfigurationDraft(
    name="Nightly",
    enabled=True,
    schedule=None,
    retention_days=30,
    inclusions=(PathItem("folder", "/srv/"),),
    exclusions=(),
    notifications=(Notification("email", "a@example.com", on_success=False, on_failure=True),),
)


class RecordingChannel:
    """The channel port: what was pushed, and what a reader saw committed at that moment."""

    def __init__(self, db: Database, reachable: bool = True) -> None:
        self.db = db
        self.reachable = reachable
        self.pushed: list[tuple[str, dict[str, Any]]] = []
        self.committed: list[tuple[str, bool] | None] = []

    def push(self, agent_id: str, item: dict[str, Any]) -> bool:
        self.pushed.append((agent_id, item))
        with self.db.read() as session:  # another connection: only committed rows
            row = session.get(Configuration, item["configuration_id"])
            self.committed.append(None if row is None else (row.name, row.deleted))
        return self.reachable


def _service(db: Database, channel: RecordingChannel) -> ConfigurationService:
    return ConfigurationService(db, RootsPolicy(("/",), ()), channel)


def test_a_remote_agent_is_told_of_each_change_after_its_commit(db: Database) -> None:
    agent = rows.agent(db, remote=True)
    channel = RecordingChannel(db)
    service = _service(db, channel)

    row = service.create(PROJECT, agent.id, DRAFT)
    service.update(PROJECT, row.id, {"name": "Renamed"})
    service.delete(PROJECT, row.id)

    told = {"type": "configuration_changed", "agent": {"id": agent.id}, "configuration_id": row.id}
    assert channel.pushed == [
        (agent.id, {**told, "change": "created"}),
        (agent.id, {**told, "change": "updated"}),
        (agent.id, {**told, "change": "deleted"}),
    ]
    # Each push came after its commit: a reader already saw the change.
    assert channel.committed == [("Nightly", False), ("Renamed", False), ("Renamed", True)]


def test_hosted_agents_and_refused_changes_push_nothing(db: Database) -> None:
    hosted = rows.agent(db)  # read from the database by the workers: no channel
    remote = rows.agent(db, remote=True)
    channel = RecordingChannel(db)
    service = _service(db, channel)
    row = service.create(PROJECT, hosted.id, DRAFT)
    service.update(PROJECT, row.id, {"enabled": False})
    service.delete(PROJECT, row.id)
    with pytest.raises(InvalidInput):
        service.create(PROJECT, remote.id, replace(DRAFT, name=""))
    with pytest.raises(NotFound):
        service.update(PROJECT, row.id, {"name": "after deletion"})
    assert channel.pushed == []


def test_a_channel_that_is_away_loses_the_item_not_the_change(db: Database) -> None:
    agent = rows.agent(db, remote=True)
    channel = RecordingChannel(db, reachable=False)
    row = _service(db, channel).create(PROJECT, agent.id, DRAFT)
    assert len(channel.pushed) == 1
    with db.read() as session:
        assert session.get(Configuration, row.id) is not None
