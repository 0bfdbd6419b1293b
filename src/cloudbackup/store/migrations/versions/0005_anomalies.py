"""anomalies and backup changes (the ransomware guard)

Revision ID: 48695515e8c2
Revises: 82edbc1f7ad6
Create Date: 2026-12-03 13:55:18.838218
"""

from collections.abc import Sequence

from cloudbackup.store.migrations.ddl import (
    big_integer,
    create_table,
    drop_table,
    floating,
    identity,
    string,
    timestamp,
)

revision: str = "48695515e8c2"
down_revision: str | None = "82edbc1f7ad6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_table(
        "anomalies",
        *identity(),
        string("agent_id", 36),
        string("configuration_id", 36),
        string("backup_id", 36),
        timestamp("detected_time"),
        string("state", 16),
        big_integer("files_compared"),
        big_integer("files_changed"),
        big_integer("files_deleted"),
        floating("changed_ratio"),
        floating("deleted_ratio"),
        big_integer("new_plain_bytes"),
        floating("compressed_size_ratio"),
        floating("history_compressed_size_ratio", nullable=True),
        timestamp("dismissed_time", nullable=True),
        string("dismissed_by", 36, nullable=True),
        primary_key="seq",
        foreign_keys={"backup_id": "backups"},
        indexes=["backup_id", "configuration_id", "project_id", "state"],
        unique_indexes=["id"],
    )

    create_table(
        "backup_changes",
        string("backup_id", 36),
        string("configuration_id", 36),
        big_integer("backup_seq"),
        big_integer("previous_files"),
        big_integer("files_changed"),
        big_integer("files_deleted"),
        big_integer("new_plain_bytes"),
        big_integer("new_stored_bytes"),
        timestamp("created_at"),
        primary_key="backup_id",
        foreign_keys={"backup_id": "backups"},
        indexes=["configuration_id"],
    )


def downgrade() -> None:
    drop_table("backup_changes", indexes=["configuration_id"])
    drop_table("anomalies", indexes=["backup_id", "configuration_id", "id", "project_id", "state"])
