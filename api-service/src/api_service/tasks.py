import uuid
from typing import Any

from fastapi import APIRouter, Query, Response, status
from sqlalchemy import Boolean, String, Uuid, bindparam, case, func, or_, select
from sqlalchemy.dialects.postgresql import insert

from api_service.access import MEMBER_ROLE, WRITERS, UserId, board_role, require_role
from api_service.concurrency import (
    IfMatch,
    expected_versions,
    set_etag,
    versioned_delete,
    versioned_update,
)
from api_service.errors import AssigneeNotMember, TaskNotFound
from api_service.models import members, tasks
from api_service.outbox import Event, append_events, board_channel
from api_service.pagination import Cursor, Limit, newest_first_page, next_cursor, page_params
from api_service.schemas import Page, TaskCreate, TaskOut, TaskStatus, TaskUpdate
from servicekit.db import Connection, ReadsDep, Statement, TransactionDep
from servicekit.errors import PreconditionFailed

board_tasks_router = APIRouter(prefix="/api/boards/{board_id}/tasks", tags=["tasks"])
router = APIRouter(prefix="/api/tasks", tags=["tasks"])

_TASK_FIELDS = ("title", "description", "status", "assignee_id")

INSERT_TASK = Statement.of(
    insert(tasks)
    .values(
        id=bindparam("id"),
        board_id=bindparam("board_id"),
        created_by=bindparam("created_by"),
        **{name: bindparam(name) for name in _TASK_FIELDS},
    )
    .returning(tasks)
)
TASK_WITH_ROLE = Statement.of(
    select(tasks, members.c.role)
    .join(members, members.c.board_id == tasks.c.board_id)
    .where(tasks.c.id == bindparam("id"), members.c.user_id == bindparam("user_id"))
)
_status = bindparam("status", type_=String)
_assignee = bindparam("assignee_id", type_=Uuid)
LIST_TASKS = Statement.of(
    newest_first_page(
        select(tasks).where(
            tasks.c.board_id == bindparam("board_id"),
            or_(_status.is_(None), tasks.c.status == _status),
            or_(_assignee.is_(None), tasks.c.assignee_id == _assignee),
        ),
        tasks,
    )
)
# Fields the client did not send keep their value; `assignee_id` may be set to null, so it
# has its own flag.
UPDATE_TASK = Statement.of(
    versioned_update(
        tasks,
        {
            "title": func.coalesce(bindparam("title"), tasks.c.title),
            "description": func.coalesce(bindparam("description"), tasks.c.description),
            "status": func.coalesce(bindparam("status"), tasks.c.status),
            "assignee_id": case(
                (bindparam("set_assignee", type_=Boolean), bindparam("assignee_id")),
                else_=tasks.c.assignee_id,
            ),
        },
    )
)
DELETE_TASK = Statement.of(versioned_delete(tasks))


async def _check_assignee(
    db: Connection, board_id: uuid.UUID, assignee_id: uuid.UUID | None
) -> None:
    if assignee_id is not None and (
        await db.fetchval(MEMBER_ROLE, board_id=board_id, user_id=assignee_id) is None
    ):
        raise AssigneeNotMember()


async def _task_and_role(db: Connection, task_id: uuid.UUID, user_id: uuid.UUID) -> Any:
    row = await db.fetchrow(TASK_WITH_ROLE, id=task_id, user_id=user_id)
    if row is None:
        raise TaskNotFound()
    return row


def _task(row: Any) -> TaskOut:
    return TaskOut.model_validate(dict(row))


@board_tasks_router.post("", status_code=status.HTTP_201_CREATED)
async def create_task(
    board_id: uuid.UUID, body: TaskCreate, user_id: UserId, db: TransactionDep, response: Response
) -> TaskOut:
    require_role(await board_role(db, board_id, user_id), WRITERS)
    await _check_assignee(db, board_id, body.assignee_id)
    row = await db.fetchrow(
        INSERT_TASK, id=uuid.uuid4(), board_id=board_id, created_by=user_id, **body.model_dump()
    )
    task = _task(row)
    await append_events(
        db, user_id, [Event(board_channel(board_id), "task.created", task.model_dump(mode="json"))]
    )
    set_etag(response, task.version)
    response.headers["Location"] = f"/api/tasks/{task.id}"
    return task


@board_tasks_router.get("")
async def list_tasks(
    board_id: uuid.UUID,
    user_id: UserId,
    db: ReadsDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: TaskStatus | None = None,
    assignee_id: uuid.UUID | None = Query(default=None),
) -> Page[TaskOut]:
    """The board's tasks, newest first, optionally filtered by status and assignee."""
    await board_role(db, board_id, user_id)
    rows = await db.fetch(
        LIST_TASKS,
        board_id=board_id,
        status=status,
        assignee_id=assignee_id,
        **page_params(limit, cursor),
    )
    return Page[TaskOut].model_validate(
        {"items": [dict(row) for row in rows[:limit]], "next_cursor": next_cursor(rows, limit)}
    )


@router.get("/{task_id}")
async def read_task(
    task_id: uuid.UUID, user_id: UserId, db: ReadsDep, response: Response
) -> TaskOut:
    task = _task(await _task_and_role(db, task_id, user_id))
    set_etag(response, task.version)
    return task


@router.patch("/{task_id}")
async def update_task(
    task_id: uuid.UUID,
    body: TaskUpdate,
    user_id: UserId,
    db: TransactionDep,
    response: Response,
    if_match: IfMatch = None,
) -> TaskOut:
    versions = expected_versions(if_match)
    current = await _task_and_role(db, task_id, user_id)
    require_role(current["role"], WRITERS)
    changes = body.model_dump(exclude_unset=True)
    await _check_assignee(db, current["board_id"], changes.get("assignee_id"))
    row = await db.fetchrow(
        UPDATE_TASK,
        id=task_id,
        versions=versions,
        set_assignee="assignee_id" in changes,
        **{name: changes.get(name) for name in _TASK_FIELDS},
    )
    if row is None:
        raise PreconditionFailed()
    task = _task(row)
    await append_events(
        db,
        user_id,
        [Event(board_channel(task.board_id), "task.updated", task.model_dump(mode="json"))],
    )
    set_etag(response, task.version)
    return task


@router.delete("/{task_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_task(
    task_id: uuid.UUID, user_id: UserId, db: TransactionDep, if_match: IfMatch = None
) -> None:
    versions = expected_versions(if_match)
    current = await _task_and_role(db, task_id, user_id)
    require_role(current["role"], WRITERS)
    if await db.fetchval(DELETE_TASK, id=task_id, versions=versions) is None:
        raise PreconditionFailed()
    board_id = current["board_id"]
    data = {"id": str(task_id), "board_id": str(board_id)}
    await append_events(db, user_id, [Event(board_channel(board_id), "task.deleted", data)])
