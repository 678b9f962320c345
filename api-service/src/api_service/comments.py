"""Comments on tasks, on SQLAlchemy's async ORM: the default path for a resource, and the one
docs/adding-a-resource.md walks through. Any member of the task's board may comment (viewers
included); the author edits; the author or a board owner deletes."""

import uuid

from fastapi import APIRouter, Response, status
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from api_service.access import OWNERS, board_scoped_row
from api_service.concurrency import IfMatch, expected_versions, set_etag
from api_service.errors import CommentNotFound, TaskNotFound
from api_service.events import COMMENT_CREATED, COMMENT_DELETED, COMMENT_UPDATED, board_channel
from api_service.models import Comment, Task
from api_service.pagination import Cursor, Limit, newest_first_page, next_cursor_of, page_params
from api_service.schemas import CommentCreate, CommentOut, CommentUpdate, Page
from eventlog.types import EventType
from eventlog.writer import Event, append_events
from servicekit.db import SessionDep
from servicekit.errors import Forbidden, PreconditionFailed, error_responses
from servicekit.security import CurrentUserId

router = APIRouter(prefix="/api", tags=["comments"], responses=error_responses(401, 422, 503))


async def _task(
    session: AsyncSession, task_id: uuid.UUID, user_id: uuid.UUID, *, key_share: bool = False
) -> Task:
    found = await board_scoped_row(session, Task, task_id, user_id, key_share=key_share)
    if found is None:
        raise TaskNotFound()
    return found[0]


async def _comment_and_role(
    session: AsyncSession, comment_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[Comment, str]:
    found = await board_scoped_row(session, Comment, comment_id, user_id)
    if found is None:
        raise CommentNotFound()
    return found


def _check_version(comment: Comment, if_match: str | None) -> None:
    versions = expected_versions(if_match)
    if versions is not None and comment.version not in versions:
        raise PreconditionFailed()


async def _flush_versioned(session: AsyncSession) -> None:
    """Write the pending change; a row another request changed or deleted since it was read
    is a failed precondition, as a stale `If-Match` is."""
    try:
        await session.flush()
    except StaleDataError as exc:
        raise PreconditionFailed() from exc


async def _record(
    session: AsyncSession, actor_id: uuid.UUID, event_type: EventType, comment: CommentOut
) -> None:
    """The change's event, in the request's transaction (it commits with the change or not at
    all). A deletion carries the comment's ids only, as a task's deletion does."""
    data = comment.model_dump(mode="json")
    if event_type is COMMENT_DELETED:
        data = {name: data[name] for name in ("id", "task_id", "board_id")}
    event = Event(board_channel(comment.board_id), event_type, data)
    await append_events(session, actor_id, [event])


@router.post(
    "/tasks/{task_id}/comments",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(404),
)
async def create_comment(
    task_id: uuid.UUID,
    body: CommentCreate,
    user_id: CurrentUserId,
    session: SessionDep,
    response: Response,
) -> CommentOut:
    task = await _task(session, task_id, user_id, key_share=True)
    comment = Comment(task_id=task.id, board_id=task.board_id, author_id=user_id, body=body.body)
    session.add(comment)
    await session.flush()
    created = CommentOut.model_validate(comment)
    await _record(session, user_id, COMMENT_CREATED, created)
    set_etag(response, created.version)
    response.headers["Location"] = f"/api/comments/{created.id}"
    return created


@router.get("/tasks/{task_id}/comments", responses=error_responses(400, 404))
async def list_comments(
    task_id: uuid.UUID,
    user_id: CurrentUserId,
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[CommentOut]:
    """The task's comments, newest first."""
    task = await _task(session, task_id, user_id)
    query = newest_first_page(select(Comment).where(Comment.task_id == task.id), Comment.__table__)
    comments = (await session.scalars(query, page_params(limit, cursor))).all()
    return Page(
        items=[CommentOut.model_validate(comment) for comment in comments[:limit]],
        next_cursor=next_cursor_of(comments, limit),
    )


@router.get("/comments/{comment_id}", responses=error_responses(404))
async def read_comment(
    comment_id: uuid.UUID, user_id: CurrentUserId, session: SessionDep, response: Response
) -> CommentOut:
    comment, _ = await _comment_and_role(session, comment_id, user_id)
    set_etag(response, comment.version)
    return CommentOut.model_validate(comment)


@router.patch("/comments/{comment_id}", responses=error_responses(400, 403, 404, 412))
async def update_comment(
    comment_id: uuid.UUID,
    body: CommentUpdate,
    user_id: CurrentUserId,
    session: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> CommentOut:
    comment, _ = await _comment_and_role(session, comment_id, user_id)
    if comment.author_id != user_id:
        raise Forbidden("Only the author may edit a comment")
    _check_version(comment, if_match)
    comment.body = body.body
    await _flush_versioned(session)
    updated = CommentOut.model_validate(comment)
    await _record(session, user_id, COMMENT_UPDATED, updated)
    set_etag(response, updated.version)
    return updated


@router.delete(
    "/comments/{comment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(400, 403, 404, 412),
)
async def delete_comment(
    comment_id: uuid.UUID, user_id: CurrentUserId, session: SessionDep, if_match: IfMatch = None
) -> None:
    comment, role = await _comment_and_role(session, comment_id, user_id)
    if comment.author_id != user_id and role not in OWNERS:
        raise Forbidden("Only the author or a board owner may delete a comment")
    _check_version(comment, if_match)
    deleted = CommentOut.model_validate(comment)
    await session.delete(comment)
    await _flush_versioned(session)
    await _record(session, user_id, COMMENT_DELETED, deleted)
