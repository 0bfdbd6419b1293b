"""Row factories: insert agents and configurations straight into the database.

For tests of other resources that need an agent or a configuration to exist but are not about
how those are created (the agent and configuration API tests use ``factories.api``).
"""

from __future__ import annotations

import uuid
from typing import Any

from cloudbackup.domain.auth import hash_token
from cloudbackup.engine.location import vault_storage
from cloudbackup.store.db import Database
from cloudbackup.store.tables import Agent, Backup, Configuration

PROJECT = "110011"


def agent(db: Database, project_id: str = PROJECT, **overrides: Any) -> Agent:
    agent_id = str(uuid.uuid4())
    vault_id = str(uuid.uuid4())
    row = Agent(
        id=agent_id,
        project_id=project_id,
        name="Web Server",
        version="1.23.008344",
        host_flavor="nova",
        host_region="DFW",
        host_machine_id=str(uuid.uuid4()),
        os_name="Ubuntu",
        os_version="14.04",
        os_architecture="64-bit",
        fingerprint="fp",
        addresses=[{"version": 4, "addr": "67.23.10.132"}],
        rsa_modulus="c4f1",
        rsa_exponent=10001,
        password_hash=hash_token("password"),
        vault_id=vault_id,
        vault_region="DFW",
    )
    for key, value in overrides.items():
        setattr(row, key, value)
    with db.transaction() as session:
        session.add(row)
    return row


def configuration(
    db: Database,
    agent_row: Agent,
    inclusions: list[dict[str, str]] | None = None,
    exclusions: list[dict[str, str]] | None = None,
    **overrides: Any,
) -> Configuration:
    row = Configuration(
        id=str(uuid.uuid4()),
        project_id=agent_row.project_id,
        agent_id=agent_row.id,
        name="Nightly",
        enabled=True,
        schedule=None,
        retention_days=30,
        inclusions=inclusions or [{"type": "folder", "path": "/web/"}],
        exclusions=exclusions or [],
        notifications=[
            {
                "type": "email",
                "destination": "a@example.com",
                "on_success": True,
                "on_failure": True,
            }
        ],
    )
    for key, value in overrides.items():
        setattr(row, key, value)
    with db.transaction() as session:
        session.add(row)
    return row


def backup(db: Database, configuration_id: str, **overrides: Any) -> Backup:
    """A backup row of an existing configuration, in its agent's vault (default: completed)."""
    with db.transaction() as session:
        config = session.get(Configuration, configuration_id)
        assert config is not None, configuration_id
        owner = session.get(Agent, config.agent_id)
        assert owner is not None
        row = Backup(
            id=str(uuid.uuid4()),
            project_id=config.project_id,
            agent_id=config.agent_id,
            configuration_id=config.id,
            vault_id=owner.vault_id,
            state="completed",
            request_id=str(uuid.uuid4()),
        )
        for key, value in overrides.items():
            setattr(row, key, value)
        session.add(row)
    return row


def restore(db: Database, backup_id: str, destination: Agent, **overrides: Any) -> Any:
    """A restore row of an existing backup onto ``destination`` (default: completed)."""
    import sqlalchemy as sa

    from cloudbackup.store.tables import BACKUPS, Restore

    with db.transaction() as session:
        source = session.execute(sa.select(Backup).where(BACKUPS.c.id == backup_id)).scalar_one()
        row = Restore(
            id=str(uuid.uuid4()),
            project_id=source.project_id,
            backup_id=source.id,
            source_agent_id=source.agent_id,
            configuration_id=source.configuration_id,
            vault_id=source.vault_id,
            snapshot_id=source.snapshot_id or 1,
            destination_agent_id=destination.id,
            state="completed",
            request_id=str(uuid.uuid4()),
        )
        for key, value in overrides.items():
            setattr(row, key, value)
        session.add(row)
    return row


def cleanup(db: Database, agent_row: Agent, **overrides: Any) -> Any:
    """A cleanup row of an agent's vault (default: completed)."""
    from cloudbackup.store.tables import Cleanup

    row = Cleanup(
        id=str(uuid.uuid4()),
        project_id=agent_row.project_id,
        agent_id=agent_row.id,
        vault_id=agent_row.vault_id,
        state="completed",
        request_id=str(uuid.uuid4()),
    )
    for key, value in overrides.items():
        setattr(row, key, value)
    with db.transaction() as session:
        session.add(row)
    return row


def worker_heartbeat(db: Database, agent_id: str | None = None, **overrides: Any) -> Any:
    """A worker's last report (``worker_heartbeats``), fresh unless ``last_seen`` says otherwise."""
    from cloudbackup.store.tables import WorkerHeartbeat, utcnow

    row = WorkerHeartbeat(
        hostname=f"worker-{uuid.uuid4().hex[:8]}@test",
        agent_id=agent_id,
        queues=["backups"],
        concurrency=2,
        running=[],
        pid=1,
        last_seen=utcnow(),
    )
    for key, value in overrides.items():
        setattr(row, key, value)
    with db.transaction() as session:
        session.add(row)
    return row


def anomaly(db: Database, backup_row: Backup, **overrides: Any) -> Any:
    """An open anomaly of the ransomware guard about ``backup_row``."""
    from cloudbackup.store.tables import Anomaly

    row = Anomaly(
        id=str(uuid.uuid4()),
        project_id=backup_row.project_id,
        agent_id=backup_row.agent_id,
        configuration_id=backup_row.configuration_id,
        backup_id=backup_row.id,
        files_compared=100,
        files_changed=80,
        changed_ratio=0.8,
        new_plain_bytes=1_000_000,
        compressed_size_ratio=1.0,
        history_compressed_size_ratio=0.3,
    )
    for key, value in overrides.items():
        setattr(row, key, value)
    with db.transaction() as session:
        session.add(row)
    return row


def stored_snapshot(settings: Any, vault_id: str, snapshot_id: int) -> None:
    """Put a snapshot object named ``snapshot_id`` in the vault's storage, as an agent's
    finished backup leaves it (the API checks that a reported snapshot exists, by name)."""
    vault_storage(settings, vault_id).put(f"snapshots/{snapshot_id}.manifest", b"sealed")
