"""`cloudbackup roots set/show/clear`: the operator's command for an agent's roots, the same
service as `/v2/admin/agents/{agent_id}/roots`."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cloudbackup.cli import app, ops
from cloudbackup.store.tables import Agent
from factories import rows


def _roots(monkeypatch, settings, *args: str):
    monkeypatch.setattr(ops, "get_settings", lambda: settings)
    return CliRunner().invoke(app, ["roots", *args])


def test_the_operator_sets_shows_and_clears_an_agents_roots(settings, db, monkeypatch):
    agent = rows.agent(db)

    set_ = _roots(monkeypatch, settings, "set", agent.id, "/srv/www/", "/home/shared")
    assert set_.exit_code == 0, set_.output
    assert json.loads(set_.stdout)["roots"] == ["/srv/www", "/home/shared"]
    with db.transaction() as session:
        assert session.get(Agent, agent.id).allowed_roots == ["/srv/www", "/home/shared"]

    shown = json.loads(_roots(monkeypatch, settings, "show", agent.id).stdout)
    assert shown["effective_roots"] == ["/srv/www", "/home/shared"]
    assert shown["effective_from"] == "the agent's roots"

    cleared = json.loads(_roots(monkeypatch, settings, "clear", agent.id).stdout)
    assert cleared["roots"] is None and cleared["effective_from"] == "CLOUDBACKUP_ALLOWED_ROOTS"


def test_relative_roots_and_unknown_agents_are_refused(settings, db, monkeypatch):
    agent = rows.agent(db)
    relative = _roots(monkeypatch, settings, "set", agent.id, "srv")
    assert relative.exit_code == 2
    assert "must be an absolute path" in relative.output
    unknown = _roots(monkeypatch, settings, "show", "no-such-agent")
    assert unknown.exit_code == 2
    assert "Agent not found" in unknown.output
