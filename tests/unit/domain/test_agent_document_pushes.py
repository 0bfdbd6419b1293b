"""An agent update (A4) and a vault migration (V1) change the agent's working document (A7):
once committed, each is pushed to a remote agent's channel as a ``configuration_changed`` item,
as configuration changes are. Hosted agents and refused changes push nothing."""

from __future__ import annotations

from typing import Any

import pytest

from cloudbackup.domain.agents import AgentService, AgentUpdate
from cloudbackup.domain.errors import InvalidInput
from cloudbackup.domain.vaults import VaultService
from cloudbackup.store.db import Database
from cloudbackup.store.tables import Agent
from factories import rows
from factories.api import PROJECT


class RecordingChannel:
    """The channel port: what was pushed, and the agent's committed row at that moment."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.pushed: list[tuple[str, dict[str, Any]]] = []
        self.committed: list[tuple[bool, str]] = []

    def push(self, agent_id: str, item: dict[str, Any]) -> bool:
        self.pushed.append((agent_id, item))
        with self.db.read() as session:  # another connection: only committed rows
            row = session.get(Agent, agent_id)
            assert row is not None
            self.committed.append((row.enabled, row.vault_id))
        return True


def _told(agent_id: str, change: str) -> tuple[str, dict[str, Any]]:
    return agent_id, {"type": "configuration_changed", "agent": {"id": agent_id}, "change": change}


def test_an_agent_update_is_pushed_to_a_remote_agent_after_its_commit(db: Database) -> None:
    remote = rows.agent(db, remote=True)
    hosted = rows.agent(db)
    channel = RecordingChannel(db)
    service = AgentService(db, channel)

    service.update(PROJECT, remote.id, AgentUpdate(enabled=False))
    service.update(PROJECT, hosted.id, AgentUpdate(enabled=False))  # reads A7 from the database
    with pytest.raises(InvalidInput):
        service.update(PROJECT, remote.id, AgentUpdate(log_level="loud"))

    assert channel.pushed == [_told(remote.id, "agent_updated")]
    assert channel.committed == [(False, remote.vault_id)]  # a reader already saw it


def test_a_vault_migration_is_pushed_to_both_remote_agents_after_its_commit(db: Database) -> None:
    source = rows.agent(db, remote=True)
    target = rows.agent(db, remote=True)
    channel = RecordingChannel(db)

    VaultService(db, channel).move(PROJECT, target.id, source.id)

    assert channel.pushed == [
        _told(source.id, "vault_migrated"),
        _told(target.id, "vault_migrated"),
    ]
    # Pushed after the commit: the target already holds the source's vault, the source a new one.
    [(_, source_vault), (_, target_vault)] = channel.committed
    assert target_vault == source.vault_id
    assert source_vault not in (source.vault_id, target.vault_id)
