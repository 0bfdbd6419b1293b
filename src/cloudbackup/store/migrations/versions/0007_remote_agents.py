"""remote agents: agents.remote (created 2026-12-03)"""

import sqlalchemy as sa
from alembic import op

revision = "5e1f0a7c2b11"
down_revision = "e9167b1a5229"


def upgrade():
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("remote", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade():
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("remote")
