"""comments on tasks (api_service.models.Comment), written by `alembic revision --autogenerate`

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 17:31:49.296983
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "comments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("board_id", sa.Uuid(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint("char_length(body) <= 10000", name="comments_body_length"),
        sa.ForeignKeyConstraint(["board_id"], ["api.boards.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["task_id"], ["api.tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        schema="api",
    )
    op.create_index(
        "comments_task_page_idx",
        "comments",
        ["task_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
        unique=False,
        schema="api",
    )


def downgrade() -> None:
    op.drop_index("comments_task_page_idx", table_name="comments", schema="api")
    op.drop_table("comments", schema="api")
