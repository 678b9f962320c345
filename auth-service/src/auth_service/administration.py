"""User administration: the admin's page of users and their flags, and members by email."""

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.errors import CannotChangeOwnAccount
from auth_service.models import LoginSession, User
from auth_service.revocation_events import DEACTIVATED, REACTIVATED, append_revocation
from auth_service.schemas import AdminUserUpdate
from auth_service.service import AuthService
from servicekit.errors import Forbidden, NotFound
from servicekit.pagination import decode_cursor, encode_cursor


@dataclass(frozen=True)
class UserPage:
    items: list[User]
    next_cursor: str | None


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


def require_admin(user: User) -> User:
    """The caller (read from the database on every request, so a demotion takes effect at
    once), if an admin; 403 otherwise."""
    if not user.is_admin:
        raise Forbidden("Admins only")
    return user


async def list_users(
    session: AsyncSession, email_prefix: str | None, limit: int, cursor: str | None
) -> UserPage:
    """Users in email order, keyset-paged on the email as PostgreSQL lower-cases it (unique,
    and indexed; Python's lower() differs from it for some letters, e.g. U+0130)."""
    email_key = func.lower(User.email)
    query = select(User, email_key).order_by(email_key).limit(limit + 1)
    if email_prefix:
        query = query.where(email_key.like(func.lower(_like_prefix(email_prefix)), escape="\\"))
    if cursor is not None:
        query = query.where(email_key > decode_cursor(cursor))
    rows = (await session.execute(query)).all()
    next_cursor = encode_cursor(rows[limit - 1][1]) if len(rows) > limit else None
    return UserPage([row[0] for row in rows[:limit]], next_cursor)


async def update_user(
    auth: AuthService, admin: User, user_id: uuid.UUID, change: AdminUserUpdate
) -> User:
    """Set a user's flags; deactivation ends every session of the user at once."""
    user = await auth.session.get(User, user_id)
    if user is None:
        raise NotFound("No such user")
    if user.id == admin.id and (change.is_active is False or change.is_admin is False):
        raise CannotChangeOwnAccount()
    if change.is_admin is not None:
        user.is_admin = change.is_admin
    if change.is_active is not None and change.is_active != user.is_active:
        user.is_active = change.is_active
        if not change.is_active:
            await auth.revoke_sessions(LoginSession.user_id == user.id, reason="deactivated")
        event = REACTIVATED if change.is_active else DEACTIVATED
        await append_revocation(auth.session, event, user.id, admin.id)
    user.updated_at = func.now()
    await auth.session.flush()
    await auth.session.refresh(user)
    return user


async def find_by_email(session: AsyncSession, email: str) -> User | None:
    user: User | None = await session.scalar(
        select(User).where(func.lower(User.email) == func.lower(email.strip()), User.is_active)
    )
    return user
