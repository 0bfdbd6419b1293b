"""webhook subscriptions, attempts and publish times (created 2026-12-03)"""

from alembic import op

from cloudbackup.store.migrations.ddl import create_table, drop_table, integer, string, timestamp

revision = "e9167b1a5229"
down_revision = "48695515e8c2"


def upgrade():
    create_table(
        "webhook_attempts",
        integer("id"),
        integer("delivery_id"),
        string("webhook_id", 36),
        timestamp("time"),
        string("status", 16),
        integer("status_code", nullable=True),
        string("error", 500, nullable=True),
        integer("duration_ms"),
        timestamp("next_attempt_at", nullable=True),
        primary_key="id",
        indexes=["delivery_id", "webhook_id"],
    )

    create_table(
        "webhook_subscriptions",
        string("webhook_id", 36),
        string("event", 64),
        string("project_id", 64),
        primary_key=("webhook_id", "event"),
        indexes=["project_id"],
    )

    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(timestamp("published_at", nullable=True))
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_event_id"), ["event_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_event_id"))
        batch_op.drop_column("published_at")

    drop_table("webhook_subscriptions", indexes=["project_id"])
    drop_table("webhook_attempts", indexes=["delivery_id", "webhook_id"])
