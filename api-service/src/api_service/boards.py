import uuid
from typing import Any

from fastapi import APIRouter, Response, status
from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql import insert

from api_service.access import OWNERS, WRITERS, board_role, require_role
from api_service.concurrency import (
    IfMatch,
    expected_versions,
    set_etag,
    versioned_delete,
    versioned_update,
)
from api_service.errors import BoardNotFound
from api_service.events import (
    BOARD_DELETED,
    BOARD_UPDATED,
    MEMBER_ADDED,
    MEMBER_REMOVED,
    board_channel,
    user_channel,
)
from api_service.models import boards, members
from api_service.pagination import Cursor, Limit, newest_first_page, next_cursor, page_params
from api_service.schemas import Board, BoardCreate, BoardOut, BoardUpdate, MemberOut, Page
from eventlog.writer import Event, append_events
from servicekit.db import AutocommitDep, Statement, TransactionDep
from servicekit.errors import PreconditionFailed, error_responses
from servicekit.security import CurrentUserId

router = APIRouter(prefix="/api/boards", tags=["boards"], responses=error_responses(401, 422, 503))

_BOARD_WITH_ROLE = select(boards, members.c.role).join(members, members.c.board_id == boards.c.id)
INSERT_BOARD = Statement.of(
    insert(boards).values(id=bindparam("id"), name=bindparam("name")).returning(boards)
)
INSERT_OWNER = Statement.of(
    insert(members)
    .values(board_id=bindparam("board_id"), user_id=bindparam("user_id"), role="owner")
    .returning(members.c.added_at)
)
LIST_BOARDS = Statement.of(
    newest_first_page(_BOARD_WITH_ROLE.where(members.c.user_id == bindparam("user_id")), boards)
)
READ_BOARD = Statement.of(
    _BOARD_WITH_ROLE.where(
        boards.c.id == bindparam("board_id"), members.c.user_id == bindparam("user_id")
    )
)
UPDATE_BOARD = Statement.of(
    versioned_update(boards, {"name": func.coalesce(bindparam("name"), boards.c.name)})
)
DELETE_BOARD = Statement.of(versioned_delete(boards))
MEMBER_IDS = Statement.of(
    select(members.c.user_id).where(members.c.board_id == bindparam("board_id"))
)


def board_data(row: Any) -> dict[str, Any]:
    """A board as events carry it: without `role`, which depends on who reads it."""
    return Board.model_validate(dict(row)).model_dump(mode="json")


def member_data(board_id: uuid.UUID, member: MemberOut) -> dict[str, Any]:
    return {"board_id": str(board_id), **member.model_dump(mode="json")}


def removal_data(board_id: uuid.UUID, user_id: uuid.UUID) -> dict[str, Any]:
    return {"board_id": str(board_id), "user_id": str(user_id)}


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_board(
    body: BoardCreate, user_id: CurrentUserId, db: TransactionDep, response: Response
) -> BoardOut:
    board = await db.fetchrow(INSERT_BOARD, id=uuid.uuid4(), name=body.name)
    assert board is not None
    added_at = await db.fetchval(INSERT_OWNER, board_id=board["id"], user_id=user_id)
    owner = MemberOut(user_id=user_id, role="owner", added_at=added_at)
    data = member_data(board["id"], owner)
    await append_events(
        db,
        user_id,
        [
            Event(board_channel(board["id"]), MEMBER_ADDED, data),
            Event(user_channel(user_id), MEMBER_ADDED, data),
        ],
    )
    set_etag(response, board["version"])
    response.headers["Location"] = f"/api/boards/{board['id']}"
    return BoardOut.model_validate({**board, "role": "owner"})


@router.get("", responses=error_responses(400))
async def list_boards(
    user_id: CurrentUserId, db: AutocommitDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[BoardOut]:
    """The boards you are a member of, newest first."""
    rows = await db.fetch(LIST_BOARDS, user_id=user_id, **page_params(limit, cursor))
    return Page[BoardOut].model_validate(
        {"items": [dict(row) for row in rows[:limit]], "next_cursor": next_cursor(rows, limit)}
    )


@router.get("/{board_id}", responses=error_responses(404))
async def read_board(
    board_id: uuid.UUID, user_id: CurrentUserId, db: AutocommitDep, response: Response
) -> BoardOut:
    row = await db.fetchrow(READ_BOARD, board_id=board_id, user_id=user_id)
    if row is None:
        raise BoardNotFound()
    set_etag(response, row["version"])
    return BoardOut.model_validate(dict(row))


@router.patch("/{board_id}", responses=error_responses(400, 403, 404, 412))
async def update_board(
    board_id: uuid.UUID,
    body: BoardUpdate,
    user_id: CurrentUserId,
    db: TransactionDep,
    response: Response,
    if_match: IfMatch = None,
) -> BoardOut:
    versions = expected_versions(if_match)
    role = await board_role(db, board_id, user_id)
    require_role(role, WRITERS)
    board = await db.fetchrow(UPDATE_BOARD, id=board_id, name=body.name, versions=versions)
    if board is None:
        raise PreconditionFailed()
    await append_events(
        db, user_id, [Event(board_channel(board_id), BOARD_UPDATED, board_data(board))]
    )
    set_etag(response, board["version"])
    return BoardOut.model_validate({**board, "role": role})


@router.delete(
    "/{board_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(400, 403, 404, 412),
)
async def delete_board(
    board_id: uuid.UUID, user_id: CurrentUserId, db: TransactionDep, if_match: IfMatch = None
) -> None:
    """Deletes the board with its tasks and members (owners only)."""
    versions = expected_versions(if_match)
    require_role(await board_role(db, board_id, user_id, lock=True), OWNERS)
    member_ids = [row["user_id"] for row in await db.fetch(MEMBER_IDS, board_id=board_id)]
    if await db.fetchval(DELETE_BOARD, id=board_id, versions=versions) is None:
        raise PreconditionFailed()
    removed = [
        Event(user_channel(member_id), MEMBER_REMOVED, removal_data(board_id, member_id))
        for member_id in member_ids
    ]
    await append_events(
        db,
        user_id,
        [Event(board_channel(board_id), BOARD_DELETED, {"id": str(board_id)}), *removed],
    )
