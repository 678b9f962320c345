"""Who may do what: membership roles, read from the board's members in the same transaction."""

import uuid

from sqlalchemy import bindparam, select

from api_service.errors import BoardNotFound
from api_service.models import boards, members
from servicekit.db import Statement, StatementRunner
from servicekit.errors import Forbidden

WRITERS = frozenset({"owner", "editor"})
OWNERS = frozenset({"owner"})

LOCK_BOARD = Statement.of(
    select(boards.c.id).where(boards.c.id == bindparam("board_id")).with_for_update()
)
MEMBER_ROLE = Statement.of(
    select(members.c.role).where(
        members.c.board_id == bindparam("board_id"), members.c.user_id == bindparam("user_id")
    )
)


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


def require_role(role: str, allowed: frozenset[str]) -> None:
    if role not in allowed:
        raise Forbidden(f"Your role ({role}) may not do this")
