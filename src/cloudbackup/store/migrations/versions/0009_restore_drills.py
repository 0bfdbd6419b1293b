"""restore drills (issue 14): drills, drill_errors, events.drill_id

Revision ID: 70f22a77c13f
Revises: c4a7d2e91b05
Create Date: 2026-12-03 14:46:19.216989
"""

from collections.abc import Sequence

from alembic import op

from cloudbackup.store.migrations.ddl import (
    big_integer,
    create_table,
    dispatch,
    drop_table,
    error_summary,
    exception,
    floating,
    identity,
    integer,
    lifecycle,
    problem,
    string,
    timestamps,
)

revision: str = "70f22a77c13f"
down_revision: str | None = "c4a7d2e91b05"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_table(
        "drills",
        *identity(),
        string("vault_id", 36),
        *lifecycle(),
        *error_summary(),
        *dispatch(),
        *timestamps(),
        string("backup_id", 36),
        string("agent_id", 36),
        string("configuration_id", 36),
        integer("snapshot_id"),
        string("errors_diagnostics"),
        big_integer("files_checked"),
        big_integer("bytes_checked"),
        integer("mismatches"),
        floating("duration_seconds", nullable=True),
        big_integer("bytes_per_second", nullable=True),
        primary_key="seq",
        foreign_keys={"backup_id": "backups"},
        indexes=["backup_id", "configuration_id", "project_id", "state"],
        unique_indexes=["id"],
    )

    create_table(
        "drill_errors",
        *exception(),
        integer("pk"),
        *problem(),
        string("drill_id", 36),
        primary_key="pk",
        foreign_keys={"drill_id": "drills"},
        indexes=["drill_id"],
    )

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(string("drill_id", 36, nullable=True))
        batch_op.create_index(batch_op.f("ix_events_drill_id"), ["drill_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_drill_id"))
        batch_op.drop_column("drill_id")

    drop_table("drill_errors", indexes=["drill_id"])
    drop_table("drills", indexes=["backup_id", "configuration_id", "id", "project_id", "state"])
