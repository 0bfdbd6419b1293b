"""`cloudbackup agent --agent-id X`: a host worker that does not start leaves X unpinned, so X's
next backup goes to the shared queue instead of waiting for a worker that never came."""

from __future__ import annotations

import msgspec
import pytest
import redis
from litestar.testing import TestClient
from typer.testing import CliRunner

from cloudbackup.cli import app, ops
from cloudbackup.queue.names import QueueNames
from cloudbackup.queue.publishing import CeleryDispatcher
from cloudbackup.server import create_app
from cloudbackup.store import agent_pins
from factories import rows
from factories.api import start_backup, token


class ExecFailed(OSError):
    """What the test's os.execv raises: the worker program could not be started."""


@pytest.fixture
def execs(monkeypatch):
    """The argv of every attempt to start the worker program (which fails: never replace pytest)."""
    attempts: list[list[str]] = []

    def execv(path: str, argv: list[str]) -> None:
        attempts.append(list(argv))
        raise ExecFailed("worker program did not start")

    monkeypatch.setattr(ops.os, "execv", execv)
    return attempts


def _agent_command(monkeypatch, settings, *args: str):
    monkeypatch.setattr(ops, "get_settings", lambda: settings)
    return CliRunner().invoke(app, ["agent", *args])


def test_an_unreachable_broker_fails_at_once_and_pins_nothing(settings, db, monkeypatch, execs):
    agent = rows.agent(db)
    unreachable = msgspec.structs.replace(settings, broker_url="redis://127.0.0.1:9/0")

    result = _agent_command(monkeypatch, unreachable, "--agent-id", agent.id)

    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())  # the console wraps long lines
    assert said.startswith("error: the broker at 127.0.0.1:9 does not answer (")
    assert said.endswith(f"); agent {agent.id} is not pinned")
    assert execs == []
    assert agent_pins.pinned_agents(db) == frozenset()
    # The agent's next backup is routed to the shared queue, where a worker takes it.
    names = QueueNames(settings.backup_queue)
    broker = redis.Redis.from_url(settings.broker_url)
    dispatcher = CeleryDispatcher.from_settings(settings, database=db)
    with TestClient(app=create_app(settings, database=db, dispatcher=dispatcher)) as api:
        response = start_backup(api, token(db), rows.configuration(db, agent).id)
    assert response.status_code == 201, response.text
    assert (broker.llen(names.manual), broker.llen(names.agent(agent.id))) == (1, 0)
    broker.delete(*names.shared())


def test_the_worker_pins_its_agent_so_a_worker_that_fails_to_start_leaves_none(
    settings, db, monkeypatch, execs
):
    agent = rows.agent(db)

    result = _agent_command(monkeypatch, settings, "--agent-id", agent.id, "--concurrency", "2")

    assert isinstance(result.exception, ExecFailed)
    [argv] = execs
    queues = QueueNames(settings.backup_queue).for_agent(agent.id)
    assert argv[argv.index("--queues") + 1] == ",".join(queues)
    assert argv[argv.index("--concurrency") + 1] == "2"
    assert agent_pins.pinned_agents(db) == frozenset()
    assert CeleryDispatcher.from_settings(settings, database=db).queue_for("backup", agent.id) == (
        QueueNames(settings.backup_queue).manual
    )


def test_release_sends_a_pinned_agent_back_to_the_shared_queues(settings, db, monkeypatch):
    agent = rows.agent(db)
    agent_pins.pin_agent(db, agent.id)

    result = _agent_command(monkeypatch, settings, "--agent-id", agent.id, "--release")

    assert result.exit_code == 0, result.output
    assert "uses the shared queues again" in result.output
    assert agent_pins.pinned_agents(db) == frozenset()
