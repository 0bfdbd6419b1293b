"""agent allowed roots

Revision ID: c4a7d2e91b05
Revises: 5e1f0a7c2b11
Create Date: 2026-12-03 14:00:00
"""

from collections.abc import Sequence

from alembic import op

from cloudbackup.store.migrations.ddl import json

revision: str = "c4a7d2e91b05"
down_revision: str | None = "5e1f0a7c2b11"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(json("allowed_roots", nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("allowed_roots")
