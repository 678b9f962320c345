"""Tables of the `api` schema, as SQLAlchemy Core: the write path uses Core statements. The
event log's tables are the eventlog package's (eventlog.tables), in its own schema."""

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
