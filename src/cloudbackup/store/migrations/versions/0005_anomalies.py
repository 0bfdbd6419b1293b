"""anomalies and backup changes (the ransomware guard) (created 2026-12-03)"""

from cloudbackup.store.migrations.ddl import (
    big_integer,
    create_listed_table,
    create_table,
    drop_listed_table,
    drop_table,
    floating,
    string,
    timestamp,
)

revision = "48695515e8c2"
down_revision = "82edbc1f7ad6"


def upgrade():
    create_listed_table(
        "anomalies",
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
        foreign_keys={"backup_id": "backups"},
        indexes=["backup_id", "configuration_id", "state"],
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


def downgrade():
    drop_table("backup_changes", indexes=["configuration_id"])
    drop_listed_table("anomalies", indexes=["backup_id", "configuration_id", "state"])
