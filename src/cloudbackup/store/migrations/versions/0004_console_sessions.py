"""console sessions (created 2026-12-03)"""

from cloudbackup.store.migrations.ddl import create_table, drop_table, string, timestamp

revision = "82edbc1f7ad6"
down_revision = "50375b423e03"


def upgrade():
    create_table(
        "console_sessions",
        string("id", 36),
        string("secret_hash", 64),
        string("token_id", 36),
        string("sealed_token", 1000, nullable=True),
        timestamp("created_at"),
        timestamp("expires_at"),
        timestamp("ended_at", nullable=True),
        primary_key="id",
        indexes=["token_id"],
        unique_indexes=["secret_hash"],
    )


def downgrade():
    drop_table("console_sessions", indexes=["secret_hash", "token_id"])
