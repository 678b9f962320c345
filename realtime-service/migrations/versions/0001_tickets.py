"""one-time connection tickets

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "realtime"


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("ticket_hash", sa.LargeBinary(), primary_key=True),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("tickets_expires_at_idx", "tickets", ["expires_at"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("tickets", schema=SCHEMA)
