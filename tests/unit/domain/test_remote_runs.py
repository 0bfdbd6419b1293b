"""A remote agent's backup: the worker claims it and hands it to the agent's channel with the
claim's attempt; a re-drive after the agent went silent hands it over again with the next."""

from __future__ import annotations

from typing import Any

import msgspec
import redis

from cloudbackup.domain.remote_runs import backup_executor
from cloudbackup.domain.run_protocol import Outcome
from cloudbackup.queue.agent_channels import RedisAgentChannel, channel_key
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import BackupRepository
from factories import rows
from factories.remote_agents import age_heartbeat


def _items(settings: Settings, agent_id: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(settings.broker_url)
    return [msgspec.json.decode(f[b"item"]) for _, f in client.xrange(channel_key(agent_id))]


def test_a_remote_agents_backup_is_handed_to_its_channel_and_re_driven_with_a_new_attempt(
    db: Database, settings: Settings
) -> None:
    agent = rows.agent(db, remote=True)
    config = rows.configuration(db, agent, inclusions=[{"type": "folder", "path": "/srv/"}])
    backup = rows.backup(db, config.id, state="start_requested")
    execute = backup_executor(RedisAgentChannel(settings.broker_url))

    assert execute(db, settings, backup.id) == Outcome.DELEGATED
    [first] = _items(settings, agent.id)
    assert first == {
        "type": "run",
        "kind": "backup",
        "id": backup.id,
        "attempt": 1,
        "state": "queued",
        "configuration_id": config.id,
        "checkpoint_seconds": settings.backup_checkpoint_seconds,
        "inclusions": [{"type": "folder", "path": "/srv/"}],
        "exclusions": [],
    }
    assert execute(db, settings, backup.id) == Outcome.BUSY  # its heartbeat is fresh

    age_heartbeat(db, backup.id, settings)  # the agent went silent
    assert execute(db, settings, backup.id) == Outcome.DELEGATED
    second = _items(settings, agent.id)[-1]
    assert (second["id"], second["attempt"]) == (backup.id, 2)

    for _ in range(settings.max_attempts):
        age_heartbeat(db, backup.id, settings)
        execute(db, settings, backup.id)
    with db.read() as session:
        row = BackupRepository(session).get(backup.id)
        assert row is not None
        assert row.state == "failed"  # never stuck: given up with a reason
        assert "stopped responding" in (row.errors_diagnostics or "")


def test_a_hosted_agents_backup_still_runs_on_the_worker(
    db: Database, settings: Settings, tmp_path: Any
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("hello")
    agent = rows.agent(db)
    config = rows.configuration(db, agent, inclusions=[{"type": "folder", "path": str(source)}])
    backup = rows.backup(db, config.id, state="start_requested")
    execute = backup_executor(RedisAgentChannel(settings.broker_url))
    assert execute(db, settings, backup.id) == Outcome.COMPLETED
    assert _items(settings, agent.id) == []
