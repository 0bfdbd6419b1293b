"""Request factories: build resources through the real API, as a user would."""

from __future__ import annotations

import uuid
from typing import Any

from cloudbackup.domain.auth import create_token
from cloudbackup.store.db import Database

PROJECT = "110011"
OTHER_PROJECT = "220022"


def token(db: Database, project_id: str = PROJECT, role: str = "admin") -> str:
    with db.transaction() as session:
        secret, _ = create_token(session, project_id, [role])
    return secret


def headers(secret: str, **extra: str) -> dict[str, str]:
    return {"X-Auth-Token": secret, "Content-Type": "application/json", **extra}


def agent_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Web Server",
        "version": "1.23.008344",
        "host": {
            "flavor": "nova",
            "region": "DFW",
            "machine": {"id": str(uuid.uuid4())},
            "os": {"name": "Ubuntu", "version": "14.04", "architecture": "64-bit"},
            "fingerprint": "fp-" + uuid.uuid4().hex,
            "addresses": [{"version": 4, "addr": "67.23.10.132"}],
        },
        "rsa_public_key": {"modulus": "c4f1a2b3", "exponent": 10001},
    }
    body.update(overrides)
    return body


def configuration_body(
    agent_id: str, inclusions: list[str] | None = None, **overrides: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "agent_id": agent_id,
        "name": "Every Other Hour Configuration",
        "enabled": True,
        "schedule": None,
        "retention": {"days": 30},
        "inclusions": [{"type": "folder", "path": p} for p in (inclusions or ["/web/"])],
        "exclusions": [],
        "notifications": [
            {
                "type": "email",
                "destination": "email@example.com",
                "on_success": True,
                "on_failure": True,
            }
        ],
    }
    body.update(overrides)
    return body


def restore_body(
    backup_id: str, agent_id: str, destination: str, **overrides: Any
) -> dict[str, Any]:
    """R1 of a whole backup into ``destination`` on ``agent_id``, no file overwritten."""
    body: dict[str, Any] = {
        "backup_id": backup_id,
        "destination_agent_id": agent_id,
        "destination_path": destination,
        "overwrite_files": False,
        "encrypted_password_hex": None,
        "inclusions": [],
        "exclusions": [],
    }
    body.update(overrides)
    return body


def register_agent(
    client: Any, secret: str, project_id: str = PROJECT, **overrides: Any
) -> dict[str, Any]:
    response = client.post(
        f"/v2/{project_id}/agents", json=agent_body(**overrides), headers=headers(secret)
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def create_configuration(
    client: Any,
    secret: str,
    agent_id: str,
    inclusions: list[str] | None = None,
    project_id: str = PROJECT,
    **overrides: Any,
) -> dict[str, Any]:
    response = client.post(
        f"/v2/{project_id}/configurations",
        json=configuration_body(agent_id, inclusions, **overrides),
        headers=headers(secret),
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def start_backup(
    client: Any, secret: str, configuration_id: str, project_id: str = PROJECT, **extra: str
) -> Any:
    return client.post(
        f"/v2/{project_id}/backups",
        json={"configuration_id": configuration_id, "state": "start_requested"},
        headers=headers(secret, **extra),
    )


def start_restore(
    client: Any,
    secret: str,
    backup_id: str,
    agent_id: str,
    destination: Any,
    project_id: str = PROJECT,
    **overrides: Any,
) -> Any:
    """POST a restore of ``backup_id`` to ``destination`` (None: in place) on ``agent_id``."""
    body = {
        "backup_id": backup_id,
        "destination_agent_id": agent_id,
        "destination_path": None if destination is None else str(destination),
        "overwrite_files": False,
        "encrypted_password_hex": None,
        "inclusions": [],
        "exclusions": [],
        **overrides,
    }
    return client.post(f"/v2/{project_id}/restores", json=body, headers=headers(secret))


def agent_token(db: Database, agent_id: str, project_id: str = PROJECT) -> str:
    """A token of ``agent_id`` (what A9 gives the agent): the one that may report its runs."""
    with db.transaction() as session:
        secret, _ = create_token(session, project_id, ["creator"], agent_id=agent_id)
    return secret


def agent_token_of(client: Any, agent_id: str, project_id: str = PROJECT) -> str:
    """:func:`agent_token`, through the database of the app under test (for helpers that have
    only the client)."""
    return agent_token(client.app.state.database, agent_id, project_id)
