"""User administration: the admin's page of users and their flags, and members by email."""

import base64
import binascii
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.errors import CannotChangeOwnAccount
from auth_service.models import LoginSession, User
from auth_service.revocation_events import DEACTIVATED, REACTIVATED, append_revocation
from auth_service.schemas import AdminUserUpdate
from auth_service.service import AuthService
from servicekit.errors import Forbidden, NotFound, ServiceError
from servicekit.schemas import storable_text


class InvalidCursor(ServiceError):
    status_code = 400
    error = "invalid_cursor"
    default_detail = "The cursor is malformed"


@dataclass(frozen=True)
class UserPage:
    items: list[User]
    next_cursor: str | None


def encode_cursor(email: str) -> str:
    return base64.urlsafe_b64encode(email.lower().encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        # Decoded bytes are the client's: they could hold NUL, which PostgreSQL cannot compare.
        return storable_text(base64.b64decode(padded, altchars=b"-_", validate=True).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor() from exc


def _like_prefix(prefix: str) -> str:
    escaped = prefix.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


async def require_admin(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The caller, if an active admin; 403 otherwise. Read from the database on every call, so
    a demotion takes effect at once."""
    user = await session.get(User, user_id)
    if user is None or not user.is_active or not user.is_admin:
        raise Forbidden("Admins only")
    return user


async def list_users(
    session: AsyncSession, email_prefix: str | None, limit: int, cursor: str | None
) -> UserPage:
    """Users in email order, keyset-paged on the lower-cased email (unique, and indexed)."""
    email_key = func.lower(User.email)
    query = select(User).order_by(email_key).limit(limit + 1)
    if email_prefix:
        query = query.where(email_key.like(_like_prefix(email_prefix), escape="\\"))
    if cursor is not None:
        query = query.where(email_key > decode_cursor(cursor))
    users = list((await session.scalars(query)).all())
    next_cursor = encode_cursor(users[limit - 1].email) if len(users) > limit else None
    return UserPage(users[:limit], next_cursor)


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
        select(User).where(func.lower(User.email) == email.strip().lower(), User.is_active)
    )
    return user
