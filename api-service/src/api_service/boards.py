import uuid
from typing import Any

from fastapi import APIRouter, Response, status
from sqlalchemy import insert, select

from api_service.access import OWNERS, WRITERS, UserId, board_role, require_role
from api_service.concurrency import (
    IfMatch,
    expected_versions,
    set_etag,
    versioned_delete,
    versioned_update,
)
from api_service.errors import BoardNotFound
from api_service.models import boards, members
from api_service.outbox import Event, append_events, board_channel, user_channel
from api_service.pagination import Cursor, Limit, newest_first_page, next_cursor
from api_service.schemas import Board, BoardCreate, BoardOut, BoardUpdate, MemberOut, Page
from servicekit.db import SessionDep
from servicekit.errors import PreconditionFailed

router = APIRouter(prefix="/api/boards", tags=["boards"])


def board_data(row: Any) -> dict[str, Any]:
    return Board.model_validate(row._mapping).model_dump(mode="json")


def member_data(board_id: uuid.UUID, member: MemberOut) -> dict[str, Any]:
    return {"board_id": str(board_id), **member.model_dump(mode="json")}


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_board(
    body: BoardCreate, user_id: UserId, session: SessionDep, response: Response
) -> BoardOut:
    board = (
        await session.execute(
            insert(boards).values(id=uuid.uuid4(), name=body.name).returning(boards)
        )
    ).one()
    added_at = await session.scalar(
        insert(members)
        .values(board_id=board.id, user_id=user_id, role="owner")
        .returning(members.c.added_at)
    )
    owner = MemberOut(user_id=user_id, role="owner", added_at=added_at)
    data = member_data(board.id, owner)
    await append_events(
        session,
        user_id,
        [
            Event(board_channel(board.id), "member.added", data),
            Event(user_channel(user_id), "member.added", data),
        ],
    )
    set_etag(response, board.version)
    response.headers["Location"] = f"/api/boards/{board.id}"
    return BoardOut(**board._mapping, role="owner")


@router.get("")
async def list_boards(
    user_id: UserId, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[BoardOut]:
    """The boards you are a member of, newest first."""
    query = newest_first_page(
        select(boards, members.c.role)
        .join(members, members.c.board_id == boards.c.id)
        .where(members.c.user_id == user_id),
        boards,
        limit,
        cursor,
    )
    rows = (await session.execute(query)).all()
    items = [BoardOut(**row._mapping) for row in rows[:limit]]
    return Page[BoardOut](items=items, next_cursor=next_cursor(rows, limit))


@router.get("/{board_id}")
async def read_board(
    board_id: uuid.UUID, user_id: UserId, session: SessionDep, response: Response
) -> BoardOut:
    row = (
        await session.execute(
            select(boards, members.c.role)
            .join(members, members.c.board_id == boards.c.id)
            .where(boards.c.id == board_id, members.c.user_id == user_id)
        )
    ).one_or_none()
    if row is None:
        raise BoardNotFound()
    set_etag(response, row.version)
    return BoardOut(**row._mapping)


@router.patch("/{board_id}")
async def update_board(
    board_id: uuid.UUID,
    body: BoardUpdate,
    user_id: UserId,
    session: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> BoardOut:
    versions = expected_versions(if_match)
    role = await board_role(session, board_id, user_id)
    require_role(role, WRITERS)
    changes = body.model_dump(exclude_unset=True)
    statement = versioned_update(boards, board_id, changes, versions)
    board = (await session.execute(statement)).one_or_none()
    if board is None:
        raise PreconditionFailed()
    await append_events(
        session, user_id, [Event(board_channel(board_id), "board.updated", board_data(board))]
    )
    set_etag(response, board.version)
    return BoardOut(**board._mapping, role=role)


@router.delete("/{board_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_board(
    board_id: uuid.UUID, user_id: UserId, session: SessionDep, if_match: IfMatch = None
) -> None:
    """Deletes the board with its tasks and members (owners only)."""
    versions = expected_versions(if_match)
    require_role(await board_role(session, board_id, user_id, lock=True), OWNERS)
    statement = versioned_delete(boards, board_id, versions)
    member_ids = (
        await session.scalars(select(members.c.user_id).where(members.c.board_id == board_id))
    ).all()
    if await session.scalar(statement) is None:
        raise PreconditionFailed()
    removed = [
        Event(
            user_channel(member_id),
            "member.removed",
            {"board_id": str(board_id), "user_id": str(member_id)},
        )
        for member_id in member_ids
    ]
    await append_events(
        session,
        user_id,
        [Event(board_channel(board_id), "board.deleted", {"id": str(board_id)}), *removed],
    )
