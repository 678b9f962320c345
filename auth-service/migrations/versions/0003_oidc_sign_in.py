"""sign-in through OpenID Connect providers: linked identities, flows in progress, one-time
sign-in codes; accounts without a password

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "auth"


def _user_id(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(
        name,
        sa.Uuid(),
        sa.ForeignKey(f"{SCHEMA}.users.id", ondelete="CASCADE"),
        nullable=nullable,
    )


def upgrade() -> None:
    op.alter_column("users", "password_hash", nullable=True, schema=SCHEMA)
    op.create_table(
        "provider_identities",
        sa.Column("issuer", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        _user_id("user_id", nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("email", sa.String(254)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("issuer", "subject"),
        sa.UniqueConstraint("user_id", "provider"),
        schema=SCHEMA,
    )
    op.create_table(
        "oidc_flows",
        sa.Column("state_hash", sa.LargeBinary(), primary_key=True),
        sa.Column("browser_hash", sa.LargeBinary(), nullable=False),
        sa.Column("nonce_hash", sa.LargeBinary(), nullable=False),
        sa.Column("code_verifier", sa.String(128), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        _user_id("link_user_id", nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_oidc_flows_link_user_id", "oidc_flows", ["link_user_id"], schema=SCHEMA)
    op.create_table(
        "sign_in_codes",
        sa.Column("code_hash", sa.LargeBinary(), primary_key=True),
        _user_id("user_id", nullable=False),
        sa.Column("method", sa.String(40), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_sign_in_codes_user_id", "sign_in_codes", ["user_id"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("sign_in_codes", schema=SCHEMA)
    op.drop_table("oidc_flows", schema=SCHEMA)
    op.drop_table("provider_identities", schema=SCHEMA)
    # Accounts without a password cannot survive the old schema.
    op.execute("DELETE FROM auth.users WHERE password_hash IS NULL")
    op.alter_column("users", "password_hash", nullable=False, schema=SCHEMA)
