"""Remote agents in process: a registered agent (real RSA key, state folder) whose runner
answers what the API puts on its channel, against the API app of the ``client`` fixture."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from cloudbackup.agent.register import register
from cloudbackup.agent.runner import AgentRunner
from cloudbackup.agent.session import AgentSession
from cloudbackup.agent.state import StateDir
from cloudbackup.client.vault_password import encrypt_password
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import BackupRepository
from cloudbackup.store.tables import utcnow
from factories.api import PROJECT, headers, token

BASE = f"/v2/{PROJECT}/agents"
# Items that only tell the agent to read its working document (A7) again: not work.
DOCUMENT_CHANGED = "configuration_changed"


def age_heartbeat(db: Database, backup_id: str, settings: Settings) -> None:
    """Make an active backup's agent look silent past its heartbeat timeout (re-drivable)."""
    old = utcnow() - timedelta(seconds=settings.heartbeat_timeout_seconds + 5)
    with db.transaction() as session:
        BackupRepository(session).update_where_state(
            backup_id, ["queued", "preparing", "in_progress"], {"heartbeat_at": old}
        )


def next_work_item(
    session: AgentSession, channel: str, marker: str = "0"
) -> tuple[str, dict[str, Any]]:
    """The one work item after ``marker`` (a configuration's ``configuration_changed`` items
    are passed over) and its marker."""
    for _ in range(5):
        params = {"wait": "1", "marker": marker}
        entries = session.checked("GET", channel, params=params).json()["items"]
        work = [e for e in entries if e["item"].get("type") != DOCUMENT_CHANGED]
        if work:
            [entry] = work
            return str(entry["marker"]), entry["item"]
        marker = str(entries[-1]["marker"]) if entries else marker
    raise AssertionError(f"no work item in {channel} after {marker}")


class Host:
    """A registered agent whose runner answers what the API puts on its channel."""

    def __init__(self, client: Any, db: Database, folder: Path, name: str = "host-v") -> None:
        self.client = client
        self.admin = headers(token(db))
        self.state = StateDir(folder)
        identity = register(
            "http://testserver.local", PROJECT, token(db), name, self.state, client=client
        )
        self.session = AgentSession(identity, client=client)
        self.id = identity.agent_id
        self.runner = AgentRunner(self.state, self.session, wait=0)
        self.runner.start()
        self.marker = "0"
        assert self.next_items() == []  # reading its channel makes it remote
        self.key = self.agent()["rsa_public_key"]

    def agent(self) -> dict[str, Any]:
        return dict(self.client.get(f"{BASE}/{self.id}", headers=self.admin).json())

    def next_items(self) -> list[dict[str, Any]]:
        """The work items after the last read (``configuration_changed`` passed over)."""
        answer = self.session.checked(
            "GET", self.runner.channel, params={"wait": "1", "marker": self.marker}
        ).json()
        self.marker = answer["marker"]
        items = [entry["item"] for entry in answer["items"]]
        return [item for item in items if item.get("type") != DOCUMENT_CHANGED]

    def ask(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a V2/V5 request, let the agent handle it, and return V4/V7."""
        asked = self.client.post(f"{BASE}/{self.id}/{kind}", json=body, headers=self.admin)
        assert asked.status_code == 202, asked.text
        result = asked.headers["Location"].split("/v2/", 1)[1]
        assert self.client.get(f"/v2/{result}", headers=self.admin).status_code == 404
        [item] = self.next_items()
        self.runner.handle(item)
        answer = self.client.get(f"/v2/{result}", headers=self.admin)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def encrypt(self, new: str, old: str | None = None) -> bool:
        body = {
            "old_encrypted_password_hex": None if old is None else encrypt_password(self.key, old),
            "new_encrypted_password_hex": encrypt_password(self.key, new),
        }
        return bool(self.ask("vault-encryption-requests", body)["succeeded"])

    def verify(self, password: str) -> bool:
        body = {"encrypted_password_hex": encrypt_password(self.key, password), "agent_id": None}
        return bool(self.ask("vault-password-verification-requests", body)["valid"])
