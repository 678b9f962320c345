"""Tables of the `api` schema. Boards, members and tasks are Core tables, written by compiled
statements on their measured hot routes; comments are an ORM mapped class, the default for a
new resource (docs/adding-a-resource.md). One metadata holds both, so Alembic sees them all.
The event log's tables are the eventlog package's (eventlog.tables), in its own schema."""

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "api"
metadata = MetaData(schema=SCHEMA)

ROLES = ("owner", "editor", "viewer")
TASK_STATUSES = ("todo", "doing", "done")

boards = Table(
    "boards",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("version", Integer, nullable=False, server_default=text("1")),
)

members = Table(
    "members",
    metadata,
    Column("board_id", Uuid, ForeignKey("boards.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Uuid, nullable=False),
    Column("role", String(16), nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("board_id", "user_id"),
    CheckConstraint("role IN ('owner', 'editor', 'viewer')", name="members_role_check"),
)
Index("members_user_id_idx", members.c.user_id)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("board_id", Uuid, ForeignKey("boards.id", ondelete="CASCADE"), nullable=False),
    Column("title", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("status", String(8), nullable=False, server_default="todo"),
    Column("assignee_id", Uuid),
    Column("created_by", Uuid, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("version", Integer, nullable=False, server_default=text("1")),
    CheckConstraint("status IN ('todo', 'doing', 'done')", name="tasks_status_check"),
    CheckConstraint("char_length(description) <= 10000", name="tasks_description_length"),
)
# Keyset pagination walks (created_at, id) newest first, per board.
Index("tasks_board_page_idx", tasks.c.board_id, tasks.c.created_at.desc(), tasks.c.id.desc())


class Base(DeclarativeBase):
    """Mapped classes of the `api` schema, on the same metadata as the Core tables."""

    metadata = metadata
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True)}


class Task(Base):
    """The ORM's view of `tasks`, for rows that belong to a task (tasks.py writes tasks with
    Core statements)."""

    __table__ = tasks

    id: Mapped[uuid.UUID]
    board_id: Mapped[uuid.UUID]


class Comment(Base):
    __tablename__ = "comments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(tasks.c.id, ondelete="CASCADE"))
    # The task's board, copied: a task never changes boards, and with its own `board_id` a
    # comment's access is one join with the members (access.board_scoped_row).
    board_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(boards.c.id, ondelete="CASCADE"))
    author_id: Mapped[uuid.UUID]
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    version: Mapped[int] = mapped_column()

    __table_args__ = (CheckConstraint("char_length(body) <= 10000", name="comments_body_length"),)
    # The ORM checks and bumps `version` on every UPDATE and DELETE (optimistic concurrency:
    # a row changed since it was read raises StaleDataError); `eager_defaults` reads the
    # server's timestamps back in the same statement (RETURNING).
    __mapper_args__: Mapping[str, Any] = {"version_id_col": version, "eager_defaults": True}


# Keyset pagination walks (created_at, id) newest first, per task.
Index("comments_task_page_idx", Comment.task_id, Comment.created_at.desc(), Comment.id.desc())
