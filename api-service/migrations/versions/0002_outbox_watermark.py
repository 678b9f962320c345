"""outbox watermark: the highest event id pruning has removed

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "api"


def upgrade() -> None:
    op.create_table(
        "outbox_state",
        sa.Column("singleton", sa.Boolean(), primary_key=True, server_default=sa.true()),
        sa.Column("pruned_through", sa.BigInteger(), nullable=False, server_default="0"),
        sa.CheckConstraint("singleton", name="outbox_state_singleton"),
        schema=SCHEMA,
    )
    op.execute(f"INSERT INTO {SCHEMA}.outbox_state DEFAULT VALUES")


def downgrade() -> None:
    op.drop_table("outbox_state", schema=SCHEMA)
