"""drill schedules (issue 14), and drills by configuration and end time (created 2026-12-04)"""

from alembic import op

from cloudbackup.store.migrations.ddl import create_table, drop_table, integer, string, timestamp

revision = "e4354508d2c7"
down_revision = "9b3e6f1d4a20"

# A configuration's newest ended drill in one probe (store/drill_results.py).
CONFIGURATION_ENDED = "ix_drills_configuration_ended"


def upgrade():
    create_table(
        "drill_schedules",
        string("configuration_id", 36),
        string("project_id", 64),
        integer("every_hours"),
        timestamp("next_due_time"),
        timestamp("last_fired_time", nullable=True),
        string("last_drill_id", 36, nullable=True),
        timestamp("created_at"),
        timestamp("updated_at"),
        primary_key="configuration_id",
        indexes=["next_due_time", "project_id"],
    )
    with op.batch_alter_table("drills", schema=None) as batch_op:
        batch_op.create_index(CONFIGURATION_ENDED, ["configuration_id", "ended_time"], unique=False)


def downgrade():
    with op.batch_alter_table("drills", schema=None) as batch_op:
        batch_op.drop_index(CONFIGURATION_ENDED)
    drop_table("drill_schedules", indexes=["next_due_time", "project_id"])
