"""Reads and writes of the ransomware guard: backup changes, anomalies, and the hold an open
anomaly puts on its configuration's older backups (``tables.anomalies``)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from cloudbackup.store.db import rowcount
from cloudbackup.store.repositories import ProjectRows
from cloudbackup.store.tables import ANOMALIES, BACKUP_CHANGES, BACKUPS, Anomaly
from cloudbackup.store.tables.base import utcnow

OPEN = "open"


def held_backup_ids() -> sa.Select[tuple[str]]:
    """Ids of the backups an open anomaly holds: every backup of its configuration that ran
    before the anomalous one (lower ``seq``)."""
    anomalous = BACKUPS.alias("anomalous")
    held = BACKUPS.alias("held")
    return (
        sa.select(held.c.id)
        .join_from(ANOMALIES, anomalous, anomalous.c.id == ANOMALIES.c.backup_id)
        .join(held, held.c.configuration_id == ANOMALIES.c.configuration_id)
        .where(ANOMALIES.c.state == OPEN, held.c.seq < anomalous.c.seq)
    )


class AnomalyRepository(ProjectRows[Anomaly]):
    model = Anomaly

    # -- backup changes -----------------------------------------------------------------------
    def record_change(self, values: dict[str, Any]) -> None:
        self.session.execute(sa.insert(BACKUP_CHANGES), values)

    def history(self, configuration_id: str, before_seq: int, limit: int) -> tuple[int, int]:
        """(plaintext, stored) bytes of the new data of the configuration's last ``limit``
        backups before ``before_seq`` that stored any, leaving out anomalous ones."""
        flagged = sa.select(ANOMALIES.c.backup_id).where(
            ANOMALIES.c.configuration_id == configuration_id
        )
        recent = (
            sa.select(BACKUP_CHANGES.c.new_plain_bytes, BACKUP_CHANGES.c.new_stored_bytes)
            .where(
                BACKUP_CHANGES.c.configuration_id == configuration_id,
                BACKUP_CHANGES.c.backup_seq < before_seq,
                BACKUP_CHANGES.c.new_plain_bytes > 0,
                BACKUP_CHANGES.c.backup_id.not_in(flagged),
            )
            .order_by(BACKUP_CHANGES.c.backup_seq.desc())
            .limit(limit)
            .subquery()
        )
        plain, stored = self.session.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(recent.c.new_plain_bytes), 0),
                sa.func.coalesce(sa.func.sum(recent.c.new_stored_bytes), 0),
            )
        ).one()
        return int(plain), int(stored)

    # -- anomalies ----------------------------------------------------------------------------
    def insert(self, anomaly: Anomaly) -> None:
        self.session.add(anomaly)
        self.session.flush()

    def get(self, project_id: str, anomaly_id: str) -> Anomaly | None:
        row: Anomaly | None = self.session.execute(
            sa.select(Anomaly).where(
                ANOMALIES.c.id == anomaly_id, ANOMALIES.c.project_id == project_id
            )
        ).scalar_one_or_none()
        return row

    def dismiss(self, anomaly_id: str, token_id: str) -> bool:
        """Close an open anomaly (compare-and-set on its state); False if it was not open."""
        changed = self.session.execute(
            sa.update(ANOMALIES)
            .where(ANOMALIES.c.id == anomaly_id, ANOMALIES.c.state == OPEN)
            .values(state="dismissed", dismissed_time=utcnow(), dismissed_by=token_id)
        )
        return rowcount(changed) == 1

    def held_among(self, backup_ids: list[str]) -> set[str]:
        """Those of ``backup_ids`` that an open anomaly holds."""
        if not backup_ids:
            return set()
        held = held_backup_ids().subquery()
        rows = self.session.execute(sa.select(held.c.id).where(held.c.id.in_(backup_ids)))
        return {row[0] for row in rows}
