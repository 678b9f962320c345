import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from servicekit.schemas import NOT_NULL, VISIBLE_TEXT_PATTERN, StrictModel

Role = Literal["owner", "editor", "viewer"]
TaskStatus = Literal["todo", "doing", "done"]
BoardName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    Field(json_schema_extra={"pattern": VISIBLE_TEXT_PATTERN}),
]
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    Field(json_schema_extra={"pattern": VISIBLE_TEXT_PATTERN}),
]
Description = Annotated[str, Field(max_length=10_000)]
CommentBody = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000),
    Field(json_schema_extra={"pattern": VISIBLE_TEXT_PATTERN}),
]

Item = TypeVar("Item")


def _reject_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may not be null")
    return value


class BoardCreate(StrictModel):
    name: BoardName


class BoardUpdate(StrictModel):
    name: Annotated[BoardName | None, NOT_NULL] = None

    _name_not_null = field_validator("name", mode="before")(_reject_null)


class Board(BaseModel):
    """A board as events carry it: the same for every reader."""

    id: uuid.UUID
    name: str
    created_at: datetime
    updated_at: datetime
    version: int


class BoardOut(Board):
    role: Role
    """The caller's role on the board."""


class MemberPut(StrictModel):
    role: Role


class MemberOut(BaseModel):
    user_id: uuid.UUID
    role: Role
    added_at: datetime


class TaskCreate(StrictModel):
    title: Title
    description: Description = ""
    status: TaskStatus = "todo"
    assignee_id: uuid.UUID | None = None


class TaskUpdate(StrictModel):
    """Only the fields sent change; `assignee_id: null` unassigns, other fields may not be null."""

    title: Annotated[Title | None, NOT_NULL] = None
    description: Annotated[Description | None, NOT_NULL] = None
    status: Annotated[TaskStatus | None, NOT_NULL] = None
    assignee_id: uuid.UUID | None = None

    _not_null = field_validator("title", "description", "status", mode="before")(_reject_null)


class TaskOut(BaseModel):
    id: uuid.UUID
    board_id: uuid.UUID
    title: str
    description: str
    status: TaskStatus
    assignee_id: uuid.UUID | None
    created_by: uuid.UUID
    created_at: datetime
    updated_at: datetime
    version: int


class CommentCreate(StrictModel):
    body: CommentBody


class CommentUpdate(StrictModel):
    body: CommentBody


class CommentOut(BaseModel):
    """A comment, as responses and its events carry it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    task_id: uuid.UUID
    board_id: uuid.UUID
    author_id: uuid.UUID
    body: str
    created_at: datetime
    updated_at: datetime
    version: int


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    next_cursor: str | None
