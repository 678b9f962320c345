import uuid
from typing import Any

from fastapi import APIRouter, Query, Response, status
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from api_service.access import WRITERS, UserId, board_role, require_role
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
from api_service.pagination import Cursor, Limit, newest_first_page, next_cursor
from api_service.schemas import Page, TaskCreate, TaskOut, TaskStatus, TaskUpdate
from servicekit.db import SessionDep
from servicekit.errors import PreconditionFailed

board_tasks_router = APIRouter(prefix="/api/boards/{board_id}/tasks", tags=["tasks"])
router = APIRouter(prefix="/api/tasks", tags=["tasks"])


async def _check_assignee(
    session: AsyncSession, board_id: uuid.UUID, assignee_id: uuid.UUID | None
) -> None:
    if assignee_id is None:
        return
    is_member = await session.scalar(
        select(members.c.role).where(
            members.c.board_id == board_id, members.c.user_id == assignee_id
        )
    )
    if is_member is None:
        raise AssigneeNotMember()


async def _task_and_role(
    session: AsyncSession, task_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[Any, str]:
    row = (
        await session.execute(
            select(tasks, members.c.role)
            .join(members, members.c.board_id == tasks.c.board_id)
            .where(tasks.c.id == task_id, members.c.user_id == user_id)
        )
    ).one_or_none()
    if row is None:
        raise TaskNotFound()
    return row, row.role


def _task(row: Any) -> TaskOut:
    return TaskOut.model_validate(row._mapping, from_attributes=False)


@board_tasks_router.post("", status_code=status.HTTP_201_CREATED)
async def create_task(
    board_id: uuid.UUID, body: TaskCreate, user_id: UserId, session: SessionDep, response: Response
) -> TaskOut:
    require_role(await board_role(session, board_id, user_id), WRITERS)
    await _check_assignee(session, board_id, body.assignee_id)
    row = (
        await session.execute(
            insert(tasks)
            .values(id=uuid.uuid4(), board_id=board_id, created_by=user_id, **body.model_dump())
            .returning(tasks)
        )
    ).one()
    task = _task(row)
    await append_events(
        session,
        user_id,
        [Event(board_channel(board_id), "task.created", task.model_dump(mode="json"))],
    )
    set_etag(response, task.version)
    response.headers["Location"] = f"/api/tasks/{task.id}"
    return task


@board_tasks_router.get("")
async def list_tasks(
    board_id: uuid.UUID,
    user_id: UserId,
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: TaskStatus | None = None,
    assignee_id: uuid.UUID | None = Query(default=None),
) -> Page[TaskOut]:
    """The board's tasks, newest first, optionally filtered by status and assignee."""
    await board_role(session, board_id, user_id)
    query = select(tasks).where(tasks.c.board_id == board_id)
    if status is not None:
        query = query.where(tasks.c.status == status)
    if assignee_id is not None:
        query = query.where(tasks.c.assignee_id == assignee_id)
    rows = (await session.execute(newest_first_page(query, tasks, limit, cursor))).all()
    items = [_task(row) for row in rows[:limit]]
    return Page[TaskOut](items=items, next_cursor=next_cursor(rows, limit))


@router.get("/{task_id}")
async def read_task(
    task_id: uuid.UUID, user_id: UserId, session: SessionDep, response: Response
) -> TaskOut:
    row, _ = await _task_and_role(session, task_id, user_id)
    task = _task(row)
    set_etag(response, task.version)
    return task


@router.patch("/{task_id}")
async def update_task(
    task_id: uuid.UUID,
    body: TaskUpdate,
    user_id: UserId,
    session: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> TaskOut:
    versions = expected_versions(if_match)
    row, role = await _task_and_role(session, task_id, user_id)
    require_role(role, WRITERS)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("assignee_id") is not None:
        await _check_assignee(session, row.board_id, changes["assignee_id"])
    statement = versioned_update(tasks, task_id, changes, versions)
    updated = (await session.execute(statement)).one_or_none()
    if updated is None:
        raise PreconditionFailed()
    task = _task(updated)
    await append_events(
        session,
        user_id,
        [Event(board_channel(task.board_id), "task.updated", task.model_dump(mode="json"))],
    )
    set_etag(response, task.version)
    return task


@router.delete("/{task_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_task(
    task_id: uuid.UUID, user_id: UserId, session: SessionDep, if_match: IfMatch = None
) -> None:
    versions = expected_versions(if_match)
    row, role = await _task_and_role(session, task_id, user_id)
    require_role(role, WRITERS)
    statement = versioned_delete(tasks, task_id, versions)
    if await session.scalar(statement) is None:
        raise PreconditionFailed()
    data = {"id": str(task_id), "board_id": str(row.board_id)}
    await append_events(
        session, user_id, [Event(board_channel(row.board_id), "task.deleted", data)]
    )
