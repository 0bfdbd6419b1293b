"""restore password handover

Revision ID: 9b3e6f1d4a20
Revises: 70f22a77c13f
Create Date: 2026-12-04 03:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9b3e6f1d4a20"
down_revision: str | None = "70f22a77c13f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("restores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("encrypted_password_hex", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("restores", schema=None) as batch_op:
        batch_op.drop_column("encrypted_password_hex")
