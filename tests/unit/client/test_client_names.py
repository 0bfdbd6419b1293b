"""Commands that take an id accept the 8-character ids the CLI prints, and say which ids an
ambiguous prefix or name could mean (client/commands/names.py)."""

from __future__ import annotations

import json

import pytest

from cloudbackup.client.api import ApiClient
from cloudbackup.store.tables import Agent
from factories import rows
from factories.api import register_agent


def _config(cli, name: str = "docs") -> str:
    created = cli(
        "configs",
        "create",
        "--name",
        name,
        "--include",
        "/srv/docs",
        "--email",
        "me@x.org",
        "--json",
    )
    assert created.exit_code == 0, created.output
    return json.loads(created.stdout)["id"]


def _agent_row(db, agent_id: str) -> Agent:
    with db.transaction() as session:
        row = session.get(Agent, agent_id)
        assert row is not None
        session.expunge(row)
        return row


def test_backup_and_restore_commands_take_the_short_ids_the_lists_print(cli, agent, db):
    config_id = _config(cli)
    backup = rows.backup(db, config_id, state="in_progress")
    done = rows.backup(db, config_id, snapshot_id=7, restorable=True)
    restore = rows.restore(db, done.id, _agent_row(db, agent["id"]))
    short = backup.id[:8]
    assert short in cli("backups", "list").stdout

    shown = cli("backups", "show", short, "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["id"] == backup.id
    assert cli("backups", "errors", done.id[:8]).stdout.strip() == "no errors"
    stopped = cli("backups", "stop", short.upper())
    assert stopped.exit_code == 0, stopped.output
    assert stopped.stdout.strip() == f"stop requested; backup {backup.id} is stop_requested"
    assert json.loads(cli("restores", "show", restore.id[:6], "--json").stdout)["id"] == restore.id
    assert cli("restores", "errors", restore.id[:8]).exit_code == 0
    events = cli("events", "--backup", short, "--json")
    assert events.exit_code == 0, events.output
    assert all(json.loads(line)["backup"]["id"] == backup.id for line in events.stdout.splitlines())

    assert json.loads(cli("configs", "show", config_id[:8], "--json").stdout)["id"] == config_id
    shown_agent = cli("agents", "show", agent["id"][:8], "--json")
    assert json.loads(shown_agent.stdout)["id"] == agent["id"]


def test_an_unknown_or_too_short_id_is_a_usage_error(cli, agent):
    config_id = _config(cli)
    unknown = cli("backups", "show", "ffffffff")
    assert unknown.exit_code == 2
    assert unknown.stderr.strip() == "error: no backup with id 'ffffffff'"
    short = cli("restores", "show", "abc")
    assert short.exit_code == 2
    assert "give at least 4 characters of an id" in short.stderr
    assert cli("configs", "show", config_id[:3]).exit_code == 2


def test_an_ambiguous_prefix_or_name_lists_what_it_matches(cli, agent, client, secret, db):
    config_id = _config(cli)
    first = rows.backup(db, config_id, id="abcd0000-0000-4000-8000-000000000001", state="failed")
    second = rows.backup(db, config_id, id="abcd0000-0000-4000-8000-000000000002")
    both = cli("backups", "show", "abcd0000")
    assert both.exit_code == 2
    assert both.stderr.strip() == (
        f"error: 'abcd0000' matches several backups: {second.id} (completed), "
        f"{first.id} (failed); give more of the id"
    )
    twin = register_agent(client, secret, name="laptop")
    same_name = cli("agents", "show", "laptop")
    assert same_name.exit_code == 2
    assert f"{agent['id']} (laptop)" in same_name.stderr
    assert f"{twin['id']} (laptop)" in same_name.stderr
    assert same_name.stderr.strip().endswith("give more of the id")


def test_a_full_id_is_used_as_given_without_a_lookup(cli, agent, db, monkeypatch):
    config_id = _config(cli)
    backup = rows.backup(db, config_id)

    def refuse(*_args: object, **_kwargs: object) -> None:
        pytest.fail("a full id needs no list request")

    for name in ("list_backups", "list_restores", "list_configurations", "list_agents"):
        monkeypatch.setattr(ApiClient, name, refuse)
    assert cli("backups", "show", backup.id).exit_code == 0
    assert cli("configs", "show", config_id).exit_code == 0
    assert cli("agents", "show", agent["id"]).exit_code == 0
