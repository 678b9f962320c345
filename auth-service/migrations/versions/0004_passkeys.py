"""passkeys: WebAuthn credentials and the challenges in flight

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "auth"


def _user_id(*, nullable: bool) -> sa.Column[object]:
    return sa.Column(
        "user_id",
        sa.Uuid(),
        sa.ForeignKey(f"{SCHEMA}.users.id", ondelete="CASCADE"),
        nullable=nullable,
    )


def upgrade() -> None:
    op.create_table(
        "passkeys",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("credential_id", sa.LargeBinary(), nullable=False, unique=True),
        _user_id(nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_index("ix_passkeys_user_id", "passkeys", ["user_id"], schema=SCHEMA)
    op.create_table(
        "webauthn_challenges",
        sa.Column("challenge_hash", sa.LargeBinary(), primary_key=True),
        sa.Column("purpose", sa.String(16), nullable=False),
        _user_id(nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_webauthn_challenges_user_id", "webauthn_challenges", ["user_id"], schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_table("webauthn_challenges", schema=SCHEMA)
    op.drop_table("passkeys", schema=SCHEMA)
