"""restore drills (issue 14): drills, drill_errors, events.drill_id (created 2026-12-03)"""

from alembic import op

from cloudbackup.store.migrations.ddl import (
    big_integer,
    create_listed_table,
    create_table,
    dispatch,
    drop_listed_table,
    drop_table,
    error_summary,
    exception,
    floating,
    integer,
    lifecycle,
    problem,
    string,
    timestamps,
)

revision = "70f22a77c13f"
down_revision = "c4a7d2e91b05"


def upgrade():
    create_listed_table(
        "drills",
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
        foreign_keys={"backup_id": "backups"},
        indexes=["backup_id", "configuration_id", "state"],
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


def downgrade():
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_drill_id"))
        batch_op.drop_column("drill_id")

    drop_table("drill_errors", indexes=["drill_id"])
    drop_listed_table("drills", indexes=["backup_id", "configuration_id", "state"])
