"""One resource of every kind in a project, made through the API where an endpoint exists.

For tests that walk every route (tenant isolation, RBAC, fuzzing): they need a real id for each
path parameter. Kinds whose endpoint is missing or refuses the request get a random id, so the
helper keeps working while the API grows.
"""

from __future__ import annotations

import uuid
from typing import Any

from cloudbackup.store.db import Database
from factories import rows
from factories.api import create_configuration, headers, register_agent


def _created_id(response: Any) -> str | None:
    if response.status_code >= 300:
        return None
    location = response.headers.get("location", "")
    return location.rstrip("/").rsplit("/", 1)[-1] or None


def every_resource(client: Any, db: Database, secret: str, project_id: str) -> dict[str, str]:
    """Path parameter name -> the id of a live resource of ``project_id`` (or a random id)."""
    ids: dict[str, str] = {"project_id": project_id, "dependent_system": "storage/database"}
    agent = register_agent(client, secret, project_id)
    ids["agent_id"] = agent["id"]
    config = create_configuration(client, secret, agent["id"], project_id=project_id)
    ids["configuration_id"] = config["id"]
    done = rows.backup(db, config["id"], restorable=True, snapshot_id=1)
    ids["backup_id"] = done.id
    ids["anomaly_id"] = rows.anomaly(db, done).id
    attempts: dict[str, tuple[str, dict[str, Any] | None]] = {
        "restore_id": (
            "restores",
            {
                "backup_id": done.id,
                "destination_agent_id": agent["id"],
                "destination_path": "/tmp/restored/",
                "encrypted_password_hex": None,
                "overwrite_files": False,
                "inclusions": [],
                "exclusions": [],
            },
        ),
        "cleanup_id": ("cleanups", {"agent_id": agent["id"], "state": "start_requested"}),
        "logfile_id": (f"agents/{agent['id']}/logfiles", None),
        "drill_id": (f"backups/{done.id}/drills", None),
        "request_id": (
            f"backups/{done.id}/browse-requests",
            {
                "agent_id": agent["id"],
                "encrypted_password_hex": None,
                "path": "/",
                "path_encoded": None,
            },
        ),
        # A public address literal: the SSRF rule admits it without asking DNS.
        "webhook_id": ("webhooks", {"url": "https://93.184.216.34/hook", "events": ["*"]}),
    }
    for name, (path, body) in attempts.items():
        response = client.post(f"/v2/{project_id}/{path}", json=body, headers=headers(secret))
        ids[name] = _created_id(response) or str(uuid.uuid4())
    ids["delivery_id"] = str(uuid.uuid4().int % 10**12)  # delivery ids are digits
    return ids
