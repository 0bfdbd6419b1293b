"""No secret (API token, agent password, agent token, vault password) ever appears in a log line,
an error body, an event, or any column of any table, after a full flow.

Logging is at DEBUG for every logger, SQLAlchemy's statement log with its parameters included,
so a secret that reached any query or any log call would be caught. The only places a secret
may appear are the two answers that hand one out: A1 (the agent's password) and A9 (its token).
"""

from __future__ import annotations

import logging
import os

import msgspec
import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from cloudbackup.domain.backup_run import execute_backup
from cloudbackup.engine import PasswordRequired, open_vault
from factories.api import PROJECT, configuration_body, headers, register_agent, token
from factories.trees import make_tree

WRONG_PASSWORD = "b9f4c2e0-wrong-password-7d1a"
WRONG_TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"


def test_no_secret_is_logged_stored_or_echoed(client, db, settings, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy.engine", "cloudbackup", "litestar", "celery", "kombu"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    tree = make_tree(tmp_path / "src", files=5)
    answers = []  # every response that is not allowed to carry a secret

    def keep(response):
        answers.append(response)
        return response

    admin = token(db)
    fingerprint = "host-fingerprint-1"
    agent = register_agent(
        client,
        admin,
        host={
            "flavor": "nova",
            "region": None,
            "machine": {"id": "m-1"},
            "os": {"name": "Debian", "version": "12", "architecture": "64-bit"},
            "fingerprint": fingerprint,
            "addresses": [{"version": 4, "addr": "10.0.0.1"}],
        },
    )  # A1: the one answer that shows the password
    password = agent["password"]
    login = {
        "project_id": PROJECT,
        "id": agent["id"],
        "password": password,
        "name": "n",
        "version": "1",
        "host": {
            "os": {"name": "Debian", "version": "12", "architecture": "64-bit"},
            "fingerprint": fingerprint,
            "addresses": [],
        },
    }
    issued = client.post(f"/v2/{PROJECT}/agents/tokens", json=login)  # A9: shows the token
    assert issued.status_code == 200
    agent_token = issued.json()["token"]["id"]
    # Failed logins must not echo what was tried.
    keep(client.post(f"/v2/{PROJECT}/agents/tokens", json={**login, "password": WRONG_PASSWORD}))
    wrong_host = {**login, "host": {**login["host"], "fingerprint": "elsewhere"}}
    keep(client.post(f"/v2/{PROJECT}/agents/tokens", json=wrong_host))
    keep(client.get(f"/v2/{PROJECT}/backups", headers=headers(WRONG_TOKEN)))
    keep(client.get(f"/v2/{PROJECT}/backups", headers=headers(admin + "x")))

    # The vault of this agent is encrypted; its password lives in a key file only.
    vault_password = "correct horse battery staple 42"
    key_dir = tmp_path / "operator-keys"  # not the default <data_dir>/keys
    key_dir.mkdir()
    key_file = key_dir / f"{agent_vault_id(db, agent['id'])}.key"
    key_file.write_text(vault_password + "\n")
    os.chmod(key_file, 0o600)
    worker_settings = msgspec.structs.replace(settings, vault_key_dir=str(key_dir))

    config = keep(
        client.post(
            f"/v2/{PROJECT}/configurations",
            json=configuration_body(agent["id"], [f"{tree.root}/"]),
            headers=headers(agent_token),
        )
    ).json()
    started = keep(
        client.post(
            f"/v2/{PROJECT}/backups",
            json={"configuration_id": config["id"], "state": "start_requested"},
            headers={**headers(agent_token), "Idempotency-Key": "once"},
        )
    )
    assert started.status_code == 201, started.text
    backup_id = started.json()["id"]
    assert execute_backup(db, worker_settings, backup_id) == "completed"
    with pytest.raises(PasswordRequired):  # the vault really is encrypted
        open_vault(settings, agent_vault_id(db, agent["id"]), create=False)
    for path in (
        f"backups/{backup_id}",
        f"backups/{backup_id}/events",
        f"backups/{backup_id}/errors",
        f"agents/{agent['id']}",
        "agents",
        "events",
    ):
        keep(client.get(f"/v2/{PROJECT}/{path}", headers=headers(admin)))
    keep(client.delete(f"/v2/{PROJECT}/agents/{agent['id']}", headers=headers(agent_token)))

    secrets = {
        "admin token": admin,
        "agent password": password,
        "agent token": agent_token,
        "vault password": vault_password,
        "tried password": WRONG_PASSWORD,
        "tried token": WRONG_TOKEN,
    }
    logged = "\n".join(record.getMessage() for record in caplog.records)
    logged += "\n".join(str(getattr(record, "args", "")) for record in caplog.records)
    assert "INSERT INTO backups" in logged  # the statement log really was on
    answered = "\n".join(f"{r.status_code} {dict(r.headers)} {r.text}" for r in answers)
    stored = dump_every_table(db)
    for what, secret in secrets.items():
        assert secret not in logged, f"the {what} was logged"
        assert secret not in answered, f"the {what} was in a response"
        assert secret not in stored, f"the {what} was stored in clear"
    assert len(answers) >= 12


def agent_vault_id(db, agent_id: str) -> str:
    with db.transaction() as session:
        return session.execute(
            sa.text("SELECT vault_id FROM agents WHERE id = :id"), {"id": agent_id}
        ).scalar_one()


def dump_every_table(db) -> str:
    """Every row of every table, as text (events, errors, idempotency keys included)."""
    out = []
    with db.transaction() as session:
        for table in SQLModel.metadata.sorted_tables:
            for row in session.execute(sa.select(table)):
                out.append(repr(tuple(row)))
    return "\n".join(out)
