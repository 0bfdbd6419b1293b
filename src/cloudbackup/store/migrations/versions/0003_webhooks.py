"""webhooks and their deliveries (created 2026-12-02)"""

from cloudbackup.store.migrations.ddl import (
    create_table,
    drop_table,
    integer,
    json,
    string,
    text,
    timestamp,
)

revision = "50375b423e03"
down_revision = "3beecf0ab301"


def upgrade():
    create_table(
        "webhook_deliveries",
        integer("id"),
        string("webhook_id", 36),
        string("project_id", 64),
        integer("event_id"),
        string("event", 64),
        text("body"),
        string("state", 16),
        integer("attempts"),
        timestamp("next_attempt_at"),
        timestamp("last_attempt_at", nullable=True),
        integer("last_status_code", nullable=True),
        string("last_error", 500, nullable=True),
        timestamp("created_at"),
        timestamp("delivered_at", nullable=True),
        primary_key="id",
        indexes=["next_attempt_at", "project_id", "state", "webhook_id"],
    )

    create_table(
        "webhooks",
        string("id", 36),
        string("project_id", 64),
        string("url", 2000),
        json("events", nullable=True),
        string("description", 500),
        string("secret", 100),
        timestamp("created_at"),
        primary_key="id",
        indexes=["project_id"],
    )


def downgrade():
    drop_table("webhooks", indexes=["project_id"])
    drop_table(
        "webhook_deliveries", indexes=["next_attempt_at", "project_id", "state", "webhook_id"]
    )
