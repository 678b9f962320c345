"""Email verification and password reset: one-time tokens mailed as links, stored as hashes
with their purpose and expiry, spent by one UPDATE (so a token works once, even when two
requests race with it)."""

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth_service import metrics
from auth_service.config import Settings
from auth_service.errors import InvalidActionToken
from auth_service.mail import Mail, MailRequest
from auth_service.models import ActionToken, LoginSession, User
from auth_service.revocation_events import SESSIONS_REVOKED, append_revocation
from auth_service.service import AuthService
from auth_service.throttle import email_key

VERIFY, RESET = "verify", "reset"
LINK_PATHS = {VERIFY: "verify-email", RESET: "reset-password"}


def hash_action_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def link_ttl(settings: Settings, purpose: str) -> int:
    if purpose == VERIFY:
        return settings.verify_token_ttl_seconds
    return settings.reset_token_ttl_seconds


async def prepare_mail(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, request: MailRequest
) -> Mail | None:
    """Find the account, issue its token and build the message; None when there is nothing to
    send (no such active account, already verified, or one sent within the cooldown)."""
    async with sessionmaker.begin() as session:
        # The account row is locked until this transaction ends: two workers (or replicas)
        # preparing a mail for one account take turns, so the second sees the first's token
        # and the cooldown holds.
        if request.user_id is not None:
            user = await session.get(User, request.user_id, with_for_update=True)
        else:
            assert request.email is not None
            user = await session.scalar(
                select(User)
                .where(func.lower(User.email) == func.lower(request.email))
                .with_for_update()
            )
        if user is None or not user.is_active or (request.kind == VERIFY and user.email_verified):
            return None
        recent = await session.scalar(
            select(ActionToken.token_hash).where(
                ActionToken.user_id == user.id,
                ActionToken.purpose == request.kind,
                ActionToken.created_at
                > func.now() - timedelta(seconds=settings.mail_cooldown_seconds),
            )
        )
        if recent is not None:
            return None
        token = secrets.token_urlsafe(32)
        session.add(
            ActionToken(
                token_hash=hash_action_token(token),
                user_id=user.id,
                purpose=request.kind,
                email=user.email,
                expires_at=datetime.now(UTC) + timedelta(seconds=link_ttl(settings, request.kind)),
            )
        )
        link = f"{settings.public_url.rstrip('/')}/#{LINK_PATHS[request.kind]}={token}"
        return Mail(request.kind, user.email, user.display_name, link)


async def _spend(session: AsyncSession, token: str, purpose: str) -> User:
    row = (
        await session.execute(
            update(ActionToken)
            .where(
                ActionToken.token_hash == hash_action_token(token),
                ActionToken.purpose == purpose,
                ActionToken.used_at.is_(None),
                ActionToken.expires_at > func.now(),
            )
            .values(used_at=func.now())
            .returning(ActionToken.user_id, ActionToken.email)
        )
    ).first()
    if row is None:
        raise InvalidActionToken()
    user = await session.get(User, row.user_id)
    # A link is for the address it was sent to, and for an account still allowed in.
    if user is None or not user.is_active or user.email.lower() != row.email.lower():
        raise InvalidActionToken()
    return user


async def verify_email(session: AsyncSession, token: str) -> User:
    user = await _spend(session, token, VERIFY)
    user.email_verified = True
    await session.flush()
    return user


async def reset_password(auth: AuthService, token: str, password: str) -> uuid.UUID:
    """Set the password from a reset link; every session ends, every other reset link of the
    account dies, and the account's login throttle is cleared (the link proves ownership)."""
    user = await _spend(auth.session, token, RESET)
    user.password_hash = await auth.passwords.hash(password)
    user.updated_at = datetime.now(UTC)
    await auth.revoke_sessions(LoginSession.user_id == user.id, reason="password_reset")
    await append_revocation(auth.session, SESSIONS_REVOKED, user.id, user.id)
    await auth.session.execute(
        update(ActionToken)
        .where(
            ActionToken.user_id == user.id,
            ActionToken.purpose == RESET,
            ActionToken.used_at.is_(None),
        )
        .values(used_at=func.now())
    )
    await auth.throttling.clear(email_key(user.email))
    await auth.session.flush()
    metrics.PASSWORD_RESETS.inc()
    return user.id
