import uuid

from fastapi import APIRouter, status
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from api_service.access import OWNERS, UserId, board_role, require_role
from api_service.boards import member_data
from api_service.errors import LastOwner, MemberNotFound
from api_service.models import members
from api_service.outbox import Event, append_events, board_channel, user_channel
from api_service.schemas import MemberOut, MemberPut
from servicekit.db import SessionDep
from servicekit.errors import Forbidden

router = APIRouter(prefix="/api/boards/{board_id}/members", tags=["members"])


@router.get("")
async def list_members(
    board_id: uuid.UUID, user_id: UserId, session: SessionDep
) -> list[MemberOut]:
    await board_role(session, board_id, user_id)
    rows = await session.execute(
        select(members.c.user_id, members.c.role, members.c.added_at)
        .where(members.c.board_id == board_id)
        .order_by(members.c.added_at, members.c.user_id)
    )
    return [MemberOut(**row._mapping) for row in rows]


async def _other_owners(session: AsyncSession, board_id: uuid.UUID, member_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count()).where(
            members.c.board_id == board_id,
            members.c.role == "owner",
            members.c.user_id != member_id,
        )
    )
    return int(count or 0)


@router.put("/{member_id}")
async def put_member(
    board_id: uuid.UUID, member_id: uuid.UUID, body: MemberPut, user_id: UserId, session: SessionDep
) -> MemberOut:
    """Adds the user with this role, or changes their role (owners only)."""
    require_role(await board_role(session, board_id, user_id, lock=True), OWNERS)
    current = await session.scalar(
        select(members.c.role).where(members.c.board_id == board_id, members.c.user_id == member_id)
    )
    if (
        current == "owner"
        and body.role != "owner"
        and not await _other_owners(session, board_id, member_id)
    ):
        raise LastOwner()
    row = (
        await session.execute(
            insert(members)
            .values(board_id=board_id, user_id=member_id, role=body.role)
            .on_conflict_do_update(
                index_elements=[members.c.board_id, members.c.user_id],
                set_={"role": body.role},
            )
            .returning(members.c.user_id, members.c.role, members.c.added_at)
        )
    ).one()
    member = MemberOut(**row._mapping)
    if current != body.role:
        event_type = "member.added" if current is None else "member.updated"
        data = member_data(board_id, member)
        await append_events(
            session,
            user_id,
            [
                Event(board_channel(board_id), event_type, data),
                Event(user_channel(member_id), event_type, data),
            ],
        )
    return member


@router.delete("/{member_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_member(
    board_id: uuid.UUID, member_id: uuid.UUID, user_id: UserId, session: SessionDep
) -> None:
    """Owners remove anyone; any member may remove themself."""
    role = await board_role(session, board_id, user_id, lock=True)
    if member_id != user_id and role not in OWNERS:
        raise Forbidden("Only owners may remove other members")
    removed_role = await session.scalar(
        delete(members)
        .where(members.c.board_id == board_id, members.c.user_id == member_id)
        .returning(members.c.role)
    )
    if removed_role is None:
        raise MemberNotFound()
    if removed_role == "owner" and not await _other_owners(session, board_id, member_id):
        raise LastOwner()
    data = {"board_id": str(board_id), "user_id": str(member_id)}
    await append_events(
        session,
        user_id,
        [
            Event(board_channel(board_id), "member.removed", data),
            Event(user_channel(member_id), "member.removed", data),
        ],
    )
