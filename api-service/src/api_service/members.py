import uuid

from fastapi import APIRouter, status
from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert

from api_service.access import MEMBER_ROLE, OWNERS, board_role, require_role
from api_service.boards import member_data, removal_data
from api_service.errors import LastOwner, MemberNotFound
from api_service.events import (
    MEMBER_ADDED,
    MEMBER_REMOVED,
    MEMBER_UPDATED,
    board_channel,
    user_channel,
)
from api_service.models import members
from api_service.schemas import MemberOut, MemberPut
from eventlog.writer import Event, append_events
from servicekit.db import AutocommitDep, Statement, StatementRunner, TransactionDep
from servicekit.errors import Forbidden, error_responses
from servicekit.security import CurrentUserId

router = APIRouter(
    prefix="/api/boards/{board_id}/members",
    tags=["members"],
    responses=error_responses(401, 404, 422, 503),
)

_MEMBER_COLUMNS = (members.c.user_id, members.c.role, members.c.added_at)
LIST_MEMBERS = Statement.of(
    select(*_MEMBER_COLUMNS)
    .where(members.c.board_id == bindparam("board_id"))
    .order_by(members.c.added_at, members.c.user_id)
)
OTHER_OWNERS = Statement.of(
    select(func.count()).where(
        members.c.board_id == bindparam("board_id"),
        members.c.role == "owner",
        members.c.user_id != bindparam("user_id"),
    )
)
UPSERT_MEMBER = Statement.of(
    insert(members)
    .values(board_id=bindparam("board_id"), user_id=bindparam("user_id"), role=bindparam("role"))
    .on_conflict_do_update(
        index_elements=[members.c.board_id, members.c.user_id],
        set_={"role": bindparam("role")},
    )
    .returning(*_MEMBER_COLUMNS)
)
DELETE_MEMBER = Statement.of(
    delete(members)
    .where(members.c.board_id == bindparam("board_id"), members.c.user_id == bindparam("user_id"))
    .returning(members.c.role)
)


async def _is_last_owner(db: StatementRunner, board_id: uuid.UUID, member_id: uuid.UUID) -> bool:
    others: int = await db.fetchval(OTHER_OWNERS, board_id=board_id, user_id=member_id)
    return others == 0


@router.get("")
async def list_members(
    board_id: uuid.UUID, user_id: CurrentUserId, db: AutocommitDep
) -> list[MemberOut]:
    await board_role(db, board_id, user_id)
    rows = await db.fetch(LIST_MEMBERS, board_id=board_id)
    return [MemberOut.model_validate(dict(row)) for row in rows]


@router.put("/{member_id}", responses=error_responses(403, 409))
async def put_member(
    board_id: uuid.UUID,
    member_id: uuid.UUID,
    body: MemberPut,
    user_id: CurrentUserId,
    db: TransactionDep,
) -> MemberOut:
    """Adds the user with this role, or changes their role (owners only)."""
    require_role(await board_role(db, board_id, user_id, lock=True), OWNERS)
    current = await db.fetchval(MEMBER_ROLE, board_id=board_id, user_id=member_id)
    if (
        current == "owner"
        and body.role != "owner"
        and await _is_last_owner(db, board_id, member_id)
    ):
        raise LastOwner()
    row = await db.fetchrow(UPSERT_MEMBER, board_id=board_id, user_id=member_id, role=body.role)
    assert row is not None  # an upsert always returns its row
    member = MemberOut.model_validate(dict(row))
    if current != body.role:
        event_type = MEMBER_ADDED if current is None else MEMBER_UPDATED
        data = member_data(board_id, member)
        await append_events(
            db,
            user_id,
            [
                Event(board_channel(board_id), event_type, data),
                Event(user_channel(member_id), event_type, data),
            ],
        )
    return member


@router.delete(
    "/{member_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(403, 409),
)
async def remove_member(
    board_id: uuid.UUID, member_id: uuid.UUID, user_id: CurrentUserId, db: TransactionDep
) -> None:
    """Owners remove anyone; any member may remove themself."""
    role = await board_role(db, board_id, user_id, lock=True)
    if member_id != user_id and role not in OWNERS:
        raise Forbidden("Only owners may remove other members")
    removed_role = await db.fetchval(DELETE_MEMBER, board_id=board_id, user_id=member_id)
    if removed_role is None:
        raise MemberNotFound()
    if removed_role == "owner" and await _is_last_owner(db, board_id, member_id):
        raise LastOwner()
    data = removal_data(board_id, member_id)
    await append_events(
        db,
        user_id,
        [
            Event(board_channel(board_id), MEMBER_REMOVED, data),
            Event(user_channel(member_id), MEMBER_REMOVED, data),
        ],
    )
