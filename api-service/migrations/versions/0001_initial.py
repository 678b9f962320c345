"""boards, members, tasks and the events outbox

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "api"


def _timestamp(name: str, default: str = "now()") -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=False, server_default=sa.text(default)
    )


def upgrade() -> None:
    op.create_table(
        "boards",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False, server_default=sa.text("1")),
        schema=SCHEMA,
    )
    op.create_table(
        "members",
        sa.Column(
            "board_id",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.boards.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        _timestamp("added_at"),
        sa.PrimaryKeyConstraint("board_id", "user_id"),
        sa.CheckConstraint("role IN ('owner', 'editor', 'viewer')", name="members_role_check"),
        schema=SCHEMA,
    )
    op.create_index("members_user_id_idx", "members", ["user_id"], schema=SCHEMA)
    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "board_id",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.boards.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("status", sa.String(8), nullable=False, server_default="todo"),
        sa.Column("assignee_id", sa.Uuid()),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False, server_default=sa.text("1")),
        sa.CheckConstraint("status IN ('todo', 'doing', 'done')", name="tasks_status_check"),
        sa.CheckConstraint("char_length(description) <= 10000", name="tasks_description_length"),
        schema=SCHEMA,
    )
    op.execute(
        f"CREATE INDEX tasks_board_page_idx ON {SCHEMA}.tasks (board_id, created_at DESC, id DESC)"
    )
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("data", postgresql.JSONB(), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=False),
        _timestamp("created_at", "clock_timestamp()"),
        schema=SCHEMA,
    )
    op.create_index("events_channel_id_idx", "events", ["channel", "id"], schema=SCHEMA)
    op.create_index("events_created_at_idx", "events", ["created_at"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("events", schema=SCHEMA)
    op.drop_table("tasks", schema=SCHEMA)
    op.drop_table("members", schema=SCHEMA)
    op.drop_table("boards", schema=SCHEMA)
