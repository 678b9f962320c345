"""account lifecycle: admin/active/verified flags, one-time action tokens, login throttling,
per-user lookup budget

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "auth"


def _flag(name: str, default: bool) -> sa.Column[bool]:
    return sa.Column(
        name, sa.Boolean(), nullable=False, server_default=sa.true() if default else sa.false()
    )


def upgrade() -> None:
    op.add_column("users", _flag("is_admin", False), schema=SCHEMA)
    op.add_column("users", _flag("is_active", True), schema=SCHEMA)
    op.add_column("users", _flag("email_verified", False), schema=SCHEMA)
    op.create_table(
        "action_tokens",
        sa.Column("token_hash", sa.LargeBinary(), primary_key=True),
        sa.Column(
            "user_id",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("purpose", sa.String(16), nullable=False),
        # The email the token was made for: a verification link stops working once the
        # address changes.
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_index("ix_action_tokens_user_id", "action_tokens", ["user_id"], schema=SCHEMA)
    op.create_table(
        "login_throttle",
        # sha256 of the lower-cased email: unknown addresses are throttled too, and are not kept.
        sa.Column("email_hash", sa.LargeBinary(), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lockouts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_table(
        "lookup_budget",
        sa.Column(
            "user_id",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lookups", sa.Integer(), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("lookup_budget", schema=SCHEMA)
    op.drop_table("login_throttle", schema=SCHEMA)
    op.drop_table("action_tokens", schema=SCHEMA)
    for column in ("email_verified", "is_active", "is_admin"):
        op.drop_column("users", column, schema=SCHEMA)
