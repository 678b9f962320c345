"""Who may do what: membership roles, read from the board's members in the same transaction."""

import uuid
from typing import TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from api_service.errors import BoardNotFound
from api_service.models import Comment, Task, boards, members
from servicekit.db import Statement, StatementRunner
from servicekit.errors import Forbidden

WRITERS = frozenset({"owner", "editor"})
OWNERS = frozenset({"owner"})

LOCK_BOARD = Statement.of(
    select(boards.c.id).where(boards.c.id == bindparam("board_id")).with_for_update()
)
# One query, two paths: compiled for asyncpg (`board_role`), run on a session by `role_on_board`.
MEMBER_ROLE_QUERY = select(members.c.role).where(
    members.c.board_id == bindparam("board_id"), members.c.user_id == bindparam("user_id")
)
MEMBER_ROLE = Statement.of(MEMBER_ROLE_QUERY)


async def board_role(
    db: StatementRunner, board_id: uuid.UUID, user_id: uuid.UUID, *, lock: bool = False
) -> str:
    """The caller's role on the board; 404 when the board does not exist or they are not a
    member (existence is not revealed).

    With `lock`, the board row is locked first, so that membership changes on one board happen
    one at a time; the role is read after the lock is granted, since a read in the same
    statement would see the membership as it was before the wait.
    """
    if lock:
        await db.fetchval(LOCK_BOARD, board_id=board_id)
    role: str | None = await db.fetchval(MEMBER_ROLE, board_id=board_id, user_id=user_id)
    if role is None:
        raise BoardNotFound()
    return role


BoardScoped = TypeVar("BoardScoped", Task, Comment)
"""A mapped class whose rows belong to a board: it has `id` and `board_id` columns. A new
board-scoped resource adds its class here."""


async def board_scoped_row(
    session: AsyncSession,
    entity: type[BoardScoped],
    row_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    key_share: bool = False,
) -> tuple[BoardScoped, str] | None:
    """The row `row_id` of `entity` and the caller's role on its board, in one query; None when
    there is no such row or the caller is not a member (the caller answers the same 404 for
    both, so that existence is not revealed).

    With `key_share`, the row is locked against deletion (FOR KEY SHARE) until the transaction
    ends: for a write that inserts rows referring to it, so that a concurrent delete waits
    instead of failing the insert's foreign key.
    """
    query = (
        select(entity, members.c.role)
        .join(members, members.c.board_id == entity.board_id)
        .where(entity.id == row_id, members.c.user_id == user_id)
    )
    if key_share:
        query = query.with_for_update(read=True, key_share=True, of=entity)
    found = (await session.execute(query)).one_or_none()
    return None if found is None else (found[0], found[1])


async def role_on_board(
    session: AsyncSession, board_id: uuid.UUID, user_id: uuid.UUID
) -> str | None:
    """`board_role` on the ORM path, for rows that hang off a board itself (a parent with no
    `board_id` of its own): the caller's role, or None when they are not a member."""
    role: str | None = await session.scalar(
        MEMBER_ROLE_QUERY, {"board_id": board_id, "user_id": user_id}
    )
    return role


def require_role(role: str, allowed: frozenset[str]) -> None:
    if role not in allowed:
        raise Forbidden(f"Your role ({role}) may not do this")
