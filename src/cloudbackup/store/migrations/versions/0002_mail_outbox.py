"""mail outbox and notifier cursors (created 2026-12-02)"""

import sqlalchemy as sa

from cloudbackup.store.migrations.ddl import (
    create_table,
    drop_table,
    integer,
    string,
    text,
    timestamp,
)

revision = "3beecf0ab301"
down_revision = "78cb1cc2fd4b"


def upgrade():
    create_table(
        "mail_outbox",
        integer("id"),
        string("source", 200),
        string("project_id", 64),
        string("recipient", 320),
        string("subject", 300),
        text("body"),
        string("state", 16),
        integer("attempts"),
        timestamp("next_attempt_at"),
        string("last_error", 500, nullable=True),
        timestamp("created_at"),
        timestamp("sent_at", nullable=True),
        sa.UniqueConstraint("source", "recipient", name="uq_mail_outbox_source"),
        primary_key="id",
        indexes=["next_attempt_at", "project_id", "state"],
    )

    create_table(
        "notifier_cursors",
        string("name", 64),
        integer("last_event_id"),
        timestamp("updated_at"),
        primary_key="name",
    )


def downgrade():
    drop_table("notifier_cursors")
    drop_table("mail_outbox", indexes=["next_attempt_at", "project_id", "state"])
