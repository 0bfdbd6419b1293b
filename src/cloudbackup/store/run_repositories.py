"""Queries and conditional writes of restores, cleanups and browse requests.

Restores and cleanups are runs like backups: a state changes only through a compare-and-set
``UPDATE ... WHERE id = :id AND state IN (:from ...)`` checked by its row count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.store.db import rowcount
from cloudbackup.store.repositories import RunRepository, mark_published
from cloudbackup.store.tables import (
    AGENTS,
    BACKUPS,
    BROWSE_REQUESTS,
    CLEANUPS,
    CONFIGURATIONS,
    RESTORES,
    BrowseRequest,
    Cleanup,
    CleanupError,
    Restore,
    RestoreError,
    utcnow,
)
from cloudbackup.store.webhook_log import insert_event


def vault_encrypted(session: Session, vault_id: str) -> bool:
    """Whether the vault is encrypted, as its current owner records it (vaults move, OQ-24)."""
    flag = session.execute(
        sa.select(AGENTS.c.vault_encrypted).where(AGENTS.c.vault_id == vault_id)
    ).scalar_one_or_none()
    return bool(flag)


class RestoreRepository(RunRepository[Restore, RestoreError]):
    model = Restore
    error_model = RestoreError
    run_key = "restore_id"
    agent_key = "destination_agent_id"

    def active_of_backups(self, backup_ids: Iterable[str], states: Iterable[str]) -> set[str]:
        """The backups among ``backup_ids`` that a non-final restore is reading from now."""
        rows = self.session.execute(
            sa.select(RESTORES.c.backup_id)
            .where(RESTORES.c.backup_id.in_(list(backup_ids)), RESTORES.c.state.in_(list(states)))
            .distinct()
        )
        return {r[0] for r in rows}


class CleanupRepository(RunRepository[Cleanup, CleanupError]):
    model = Cleanup
    error_model = CleanupError
    run_key = "cleanup_id"

    def has_active(self, agent_id: str, states: Iterable[str]) -> bool:
        query = sa.select(CLEANUPS.c.seq).where(
            CLEANUPS.c.agent_id == agent_id, CLEANUPS.c.state.in_(list(states))
        )
        return self.session.execute(query.limit(1)).first() is not None

    def retained_backups(self, vault_id: str, now: Any) -> list[tuple[str, int, Any, int, bool]]:
        """(backup id, snapshot id, ended_time, retention days, restorable) of the vault's
        finished backups with a snapshot whose configuration keeps backups for a limited time
        (retention > 0, OQ-40); the caller compares ``ended_time + days`` with ``now`` (date
        arithmetic differs between databases). Already expired ones are listed too, so a
        cleanup that died between expiring and forgetting is completed by the next one."""
        rows = self.session.execute(
            sa.select(
                BACKUPS.c.id,
                BACKUPS.c.snapshot_id,
                BACKUPS.c.ended_time,
                CONFIGURATIONS.c.retention_days,
                BACKUPS.c.restorable,
            )
            .join_from(BACKUPS, CONFIGURATIONS, CONFIGURATIONS.c.id == BACKUPS.c.configuration_id)
            .where(
                BACKUPS.c.vault_id == vault_id,
                BACKUPS.c.state.in_(["completed", "completed_with_errors"]),
                BACKUPS.c.snapshot_id.is_not(None),
                BACKUPS.c.ended_time.is_not(None),
                BACKUPS.c.ended_time < now,
                CONFIGURATIONS.c.retention_days > 0,
            )
            .order_by(BACKUPS.c.seq)
        )
        return [(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    def snapshot_ids_of_vault(self, vault_id: str) -> set[int]:
        """Every snapshot id a backup row of the vault names (whatever its state)."""
        rows = self.session.execute(
            sa.select(BACKUPS.c.snapshot_id).where(
                BACKUPS.c.vault_id == vault_id, BACKUPS.c.snapshot_id.is_not(None)
            )
        )
        return {r[0] for r in rows}

    def still_referenced(self, vault_id: str, snapshot_ids: Iterable[int]) -> set[int]:
        """Those of ``snapshot_ids`` that a restorable backup of the vault still names."""
        wanted = list(snapshot_ids)
        if not wanted:
            return set()
        rows = self.session.execute(
            sa.select(BACKUPS.c.snapshot_id).where(
                BACKUPS.c.vault_id == vault_id,
                BACKUPS.c.restorable.is_(True),
                BACKUPS.c.snapshot_id.in_(wanted),
            )
        )
        return {r[0] for r in rows}

    def expire_backup(self, backup_id: str) -> bool:
        """Flip one backup to not restorable (compare-and-set on ``restorable``)."""
        result = self.session.execute(
            sa.update(BACKUPS)
            .where(BACKUPS.c.id == backup_id, BACKUPS.c.restorable.is_(True))
            .values(restorable=False, updated_at=utcnow())
        )
        return bool(rowcount(result))


class BrowseRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def insert(self, values: dict[str, Any]) -> None:
        self.session.execute(sa.insert(BROWSE_REQUESTS), values)

    def get(self, request_id: str, project_id: str | None = None) -> BrowseRequest | None:
        query = sa.select(BrowseRequest).where(BROWSE_REQUESTS.c.id == request_id)
        if project_id is not None:
            query = query.where(BROWSE_REQUESTS.c.project_id == project_id)
        row: BrowseRequest | None = self.session.execute(query).scalar_one_or_none()
        return row

    def answer(self, request_id: str, values: dict[str, Any]) -> bool:
        """Record the answer once: only a pending request can be answered."""
        result = self.session.execute(
            sa.update(BROWSE_REQUESTS)
            .where(BROWSE_REQUESTS.c.id == request_id, BROWSE_REQUESTS.c.state == "pending")
            .values(state="answered", **values)
        )
        return bool(rowcount(result))

    def set_event(self, request_id: str, event_id: int) -> None:
        self.session.execute(
            sa.update(BROWSE_REQUESTS)
            .where(BROWSE_REQUESTS.c.id == request_id)
            .values(event_id=event_id)
        )

    def add_event(self, **values: Any) -> int:
        """Append an event and return its id (a browse answer carries it, OQ-25)."""
        values.setdefault("time", utcnow())
        return insert_event(self.session, values)

    def pending(self, published_before: Any, limit: int = 500) -> Sequence[tuple[str, str]]:
        """(id, agent_id) of unanswered requests last published before ``published_before``."""
        published = BROWSE_REQUESTS.c.published_at
        rows = self.session.execute(
            sa.select(BROWSE_REQUESTS.c.id, BROWSE_REQUESTS.c.agent_id)
            .where(
                BROWSE_REQUESTS.c.state == "pending",
                sa.or_(published.is_(None), published < published_before),
            )
            .order_by(BROWSE_REQUESTS.c.created_at)
            .limit(limit)
        )
        return [(r[0], r[1]) for r in rows]

    def mark_published(self, request_ids: Sequence[str]) -> None:
        mark_published(self.session, BROWSE_REQUESTS, request_ids)

    def purge(self, answered_before: Any, created_before: Any) -> int:
        """Delete expired answers and requests nobody answered in time."""
        result = self.session.execute(
            sa.delete(BROWSE_REQUESTS).where(
                sa.or_(
                    BROWSE_REQUESTS.c.answered_at < answered_before,
                    BROWSE_REQUESTS.c.created_at < created_before,
                )
            )
        )
        return rowcount(result)
