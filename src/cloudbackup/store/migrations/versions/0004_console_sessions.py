"""console sessions

Revision ID: 82edbc1f7ad6
Revises: 50375b423e03
Create Date: 2026-12-03 10:53:35.127333
"""

from collections.abc import Sequence

from cloudbackup.store.migrations.ddl import create_table, drop_table, string, timestamp

revision: str = "82edbc1f7ad6"
down_revision: str | None = "50375b423e03"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
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


def downgrade() -> None:
    drop_table("console_sessions", indexes=["secret_hash", "token_id"])
