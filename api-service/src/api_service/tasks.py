"""Tasks. PostgreSQL renders their JSON (`task_json`): a response is the database's text passed
through, and an event carries the same JSON as the response of the write that made it."""

import json
import uuid
from typing import Any

from fastapi import APIRouter, Query, Response, status
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy import Boolean, bindparam, case, func, literal_column, text

from api_service.access import MEMBER_ROLE, WRITERS, require_role
from api_service.concurrency import (
    IfMatch,
    etag,
    expected_versions,
    versioned_delete,
    versioned_update,
)
from api_service.errors import AssigneeNotMember, BoardNotFound, TaskNotFound
from api_service.events import TASK_CREATED, TASK_DELETED, TASK_UPDATED, board_channel
from api_service.models import tasks
from api_service.pagination import Cursor, Limit, decode_cursor, encode_cursor
from api_service.schemas import Page, TaskCreate, TaskOut, TaskStatus, TaskUpdate
from eventlog.writer import (
    APPENDED_TYPES,
    Event,
    append_events,
    appending_events,
    statement_appending,
    type_param,
)
from servicekit.db import AutocommitDep, Statement, StatementRunner, TransactionDep
from servicekit.errors import PreconditionFailed, error_responses
from servicekit.security import CurrentUserId

board_tasks_router = APIRouter(
    prefix="/api/boards/{board_id}/tasks",
    tags=["tasks"],
    responses=error_responses(401, 422, 503),
)
router = APIRouter(prefix="/api/tasks", tags=["tasks"], responses=error_responses(401, 422, 503))

_TASK_FIELDS = ("title", "description", "status", "assignee_id")
_WRITER_ROLES = ", ".join(f"'{role}'" for role in sorted(WRITERS))


def _timestamp_json(column: str) -> str:
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def task_json(t: str) -> str:
    """SQL: the api.tasks row `t` as the JSON text of a task, the fields of `TaskOut`."""
    return f"""(
        SELECT row_to_json(task)::text FROM (
            SELECT {t}.id, {t}.board_id, {t}.title, {t}.description, {t}.status,
                {t}.assignee_id, {t}.created_by,
                {_timestamp_json(f"{t}.created_at")} AS created_at,
                {_timestamp_json(f"{t}.updated_at")} AS updated_at,
                {t}.version
        ) AS task
    )"""


# One statement, so one round trip and one transaction: the caller's role and the assignee's
# membership are read, and only when both allow it are the task and its event (into the inbox)
# written. The columns tell the route which check failed.
CREATE_TASK = statement_appending(
    text(
        f"""
        WITH caller AS (
            SELECT role FROM api.members
            WHERE board_id = CAST(:board_id AS uuid) AND user_id = CAST(:actor_id AS uuid)
        ),
        assignee AS (
            SELECT CAST(:assignee_id AS uuid) IS NULL OR EXISTS (
                SELECT FROM api.members
                WHERE board_id = CAST(:board_id AS uuid) AND user_id = CAST(:assignee_id AS uuid)
            ) AS is_member
        ),
        created AS (
            INSERT INTO api.tasks AS t
                (id, board_id, created_by, title, description, status, assignee_id)
            SELECT :id, :board_id, :actor_id, :title, :description, :status, :assignee_id
            FROM caller, assignee
            WHERE caller.role IN ({_WRITER_ROLES}) AND assignee.is_member
            RETURNING t.version, {task_json("t")} AS item
        ),
        new_events AS (
            SELECT 'board:' || CAST(:board_id AS text) AS channel,
                CAST(:{type_param(TASK_CREATED)} AS text) AS type,
                CAST(item AS jsonb) AS data, 1 AS n
            FROM created
        ),
        {appending_events("new_events")}
        SELECT (SELECT role FROM caller) AS role,
            (SELECT is_member FROM assignee) AS assignee_is_member,
            (SELECT version FROM created) AS version,
            (SELECT item FROM created) AS item,
            {APPENDED_TYPES}
        """
    ),
    [TASK_CREATED],
)
TASK_WITH_ROLE = Statement.of(
    text(
        f"""
        SELECT m.role, t.board_id, t.version, {task_json("t")} AS item
        FROM api.tasks AS t JOIN api.members AS m ON m.board_id = t.board_id
        WHERE t.id = :id AND m.user_id = :user_id
        """
    )
)
# The caller's role and one page in one round trip; no row when they are not a member. The
# page is read one task longer than asked, to tell whether another page follows; the JSON is
# rendered only for the rows the LIMIT keeps.
LIST_TASKS = Statement.of(
    text(
        f"""
        SELECT m.role, page.items, page.more, page.cursor_created_at, page.cursor_id
        FROM api.members AS m
        CROSS JOIN LATERAL (
            SELECT '[' || coalesce(
                    string_agg({task_json("p")}, ',' ORDER BY p.n)
                        FILTER (WHERE p.n <= :page_size),
                    ''
                ) || ']' AS items,
                count(*) > :page_size AS more,
                (array_agg(p.created_at) FILTER (WHERE p.n = :page_size))[1] AS cursor_created_at,
                (array_agg(p.id) FILTER (WHERE p.n = :page_size))[1] AS cursor_id
            FROM (
                SELECT row_number() OVER (ORDER BY t.created_at DESC, t.id DESC) AS n, t.*
                FROM (
                    SELECT * FROM api.tasks AS t
                    WHERE t.board_id = m.board_id
                        AND (CAST(:status AS text) IS NULL OR t.status = :status)
                        AND (CAST(:assignee_id AS uuid) IS NULL OR t.assignee_id = :assignee_id)
                        AND (t.created_at, t.id) < (
                            CAST(:after_created_at AS timestamptz), CAST(:after_id AS uuid)
                        )
                    ORDER BY t.created_at DESC, t.id DESC
                    LIMIT CAST(:page_size AS integer) + 1
                ) AS t
            ) AS p
        ) AS page
        WHERE m.board_id = :board_id AND m.user_id = :user_id
        """
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
    ).returning(literal_column(task_json("api.tasks")).label("item"))
)
DELETE_TASK = Statement.of(versioned_delete(tasks))


def _task_response(
    item: str, version: int, status_code: int = status.HTTP_200_OK, location: str | None = None
) -> Response:
    headers = {"ETag": etag(version)}
    if location is not None:
        headers["Location"] = location
    return Response(item, status_code, headers, media_type="application/json")


async def _check_assignee(
    db: StatementRunner, board_id: uuid.UUID, assignee_id: uuid.UUID | None
) -> None:
    if assignee_id is not None and (
        await db.fetchval(MEMBER_ROLE, board_id=board_id, user_id=assignee_id) is None
    ):
        raise AssigneeNotMember()


async def _task_and_role(db: StatementRunner, task_id: uuid.UUID, user_id: uuid.UUID) -> Any:
    row = await db.fetchrow(TASK_WITH_ROLE, id=task_id, user_id=user_id)
    if row is None:
        raise TaskNotFound()
    return row


@board_tasks_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskOut,
    responses=error_responses(403, 404),
)
async def create_task(
    board_id: uuid.UUID, body: TaskCreate, user_id: CurrentUserId, db: AutocommitDep
) -> Response:
    task_id = uuid.uuid4()
    row = await db.fetchrow(
        CREATE_TASK, id=task_id, board_id=board_id, actor_id=user_id, **body.model_dump()
    )
    assert row is not None
    if row["role"] is None:
        raise BoardNotFound()
    require_role(row["role"], WRITERS)
    if not row["assignee_is_member"]:
        raise AssigneeNotMember()
    return _task_response(
        row["item"], row["version"], status.HTTP_201_CREATED, location=f"/api/tasks/{task_id}"
    )


@board_tasks_router.get("", response_model=Page[TaskOut], responses=error_responses(400, 404))
async def list_tasks(
    board_id: uuid.UUID,
    user_id: CurrentUserId,
    db: AutocommitDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: TaskStatus | SkipJsonSchema[None] = None,
    assignee_id: uuid.UUID | SkipJsonSchema[None] = Query(default=None),
) -> Response:
    """The board's tasks, newest first, optionally filtered by status and assignee."""
    after_created_at, after_id = decode_cursor(cursor)
    page = await db.fetchrow(
        LIST_TASKS,
        board_id=board_id,
        user_id=user_id,
        status=status,
        assignee_id=assignee_id,
        after_created_at=after_created_at,
        after_id=after_id,
        page_size=limit,
    )
    if page is None:
        raise BoardNotFound()
    next_cursor = (
        encode_cursor(page["cursor_created_at"], page["cursor_id"]) if page["more"] else None
    )
    body = f'{{"items":{page["items"]},"next_cursor":{json.dumps(next_cursor)}}}'
    return Response(body, media_type="application/json")


@router.get("/{task_id}", response_model=TaskOut, responses=error_responses(404))
async def read_task(task_id: uuid.UUID, user_id: CurrentUserId, db: AutocommitDep) -> Response:
    row = await _task_and_role(db, task_id, user_id)
    return _task_response(row["item"], row["version"])


@router.patch("/{task_id}", response_model=TaskOut, responses=error_responses(400, 403, 404, 412))
async def update_task(
    task_id: uuid.UUID,
    body: TaskUpdate,
    user_id: CurrentUserId,
    db: TransactionDep,
    if_match: IfMatch = None,
) -> Response:
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
    event = Event(board_channel(row["board_id"]), TASK_UPDATED, json.loads(row["item"]))
    await append_events(db, user_id, [event])
    return _task_response(row["item"], row["version"])


@router.delete(
    "/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(400, 403, 404, 412),
)
async def delete_task(
    task_id: uuid.UUID, user_id: CurrentUserId, db: TransactionDep, if_match: IfMatch = None
) -> None:
    versions = expected_versions(if_match)
    current = await _task_and_role(db, task_id, user_id)
    require_role(current["role"], WRITERS)
    if await db.fetchval(DELETE_TASK, id=task_id, versions=versions) is None:
        raise PreconditionFailed()
    board_id = current["board_id"]
    data = {"id": str(task_id), "board_id": str(board_id)}
    await append_events(db, user_id, [Event(board_channel(board_id), TASK_DELETED, data)])
