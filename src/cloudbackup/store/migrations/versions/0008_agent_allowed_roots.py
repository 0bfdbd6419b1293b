"""agent allowed roots (created 2026-12-03)"""

from alembic import op

from cloudbackup.store.migrations.ddl import json

revision = "c4a7d2e91b05"
down_revision = "5e1f0a7c2b11"


def upgrade():
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(json("allowed_roots", nullable=True))


def downgrade():
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("allowed_roots")
