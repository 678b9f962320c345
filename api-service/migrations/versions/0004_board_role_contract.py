"""the contract function `api.board_role`, what other services may read of membership

realtime-service decides who may read or publish on a board's channel through this function,
not through `api.members`: the table stays api-service's own to change, and the function is
part of its public contract (docs/contract.md §5), kept true by api-service's tests.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "api"


def upgrade() -> None:
    # STABLE and one SELECT: PostgreSQL inlines it, so a call costs the indexed lookup it wraps.
    op.execute(
        f"""
        CREATE FUNCTION {SCHEMA}.board_role(board uuid, member uuid) RETURNS text
        LANGUAGE sql STABLE
        AS $$
            SELECT role FROM {SCHEMA}.members WHERE board_id = board AND user_id = member
        $$
        """
    )
    op.execute(
        f"COMMENT ON FUNCTION {SCHEMA}.board_role(uuid, uuid) IS"
        " 'Public contract (docs/contract.md): the role of a user on a board, NULL when not a"
        " member. Read by realtime-service.'"
    )


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SCHEMA}.board_role(uuid, uuid)")
