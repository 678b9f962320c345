"""Accounts and sessions: registration, login, refresh-token rotation, logout, profile."""

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from auth_service import metrics
from auth_service.config import Settings
from auth_service.errors import EmailTaken, LoginThrottled, WrongCurrentPassword, invalid_grant
from auth_service.keys import SigningKeys
from auth_service.models import LoginSession, RefreshToken, User
from auth_service.passwords import PasswordHasher
from auth_service.schemas import RegisterRequest, UpdateMeRequest
from auth_service.throttle import LoginThrottling, email_key
from servicekit.errors import InvalidToken
from servicekit.jwks import AccessClaims
from servicekit.jwt import encode_access_token

MAX_PASSWORD_CHARS = 128
MAX_EMAIL_CHARS = 254


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


def hash_refresh_token(token: str) -> bytes:
    # The token carries 256 random bits, so a fast hash is enough: there is nothing to guess.
    return hashlib.sha256(token.encode()).digest()


class AuthService:
    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        keys: SigningKeys,
        passwords: PasswordHasher,
    ) -> None:
        self.session = session
        self.settings = settings
        self.keys = keys
        self.passwords = passwords
        self.throttling = LoginThrottling(session, settings)

    async def register(self, request: RegisterRequest) -> User:
        email = str(request.email)
        password_hash = await self.passwords.hash(request.password)
        user: User | None = await self.session.scalar(
            insert(User)
            .values(
                id=uuid.uuid4(),
                email=email,
                display_name=request.display_name or email.split("@", 1)[0][:100],
                password_hash=password_hash,
            )
            .on_conflict_do_nothing()
            .returning(User)
        )
        if user is None:
            raise EmailTaken()
        return user

    async def current_user(self, claims: AccessClaims) -> User:
        """The token's user, while the account is active and the token's session has not ended
        (logout, a password reset or a change elsewhere, deactivation). auth-service asks its
        own tables; api-service and realtime-service learn of it from the event log."""
        user = await self.session.scalar(
            select(User)
            .join(LoginSession, LoginSession.user_id == User.id)
            .where(
                User.id == claims.user_id,
                User.is_active.is_(True),
                LoginSession.id == _uuid_or_nil(claims.session_id or ""),
                LoginSession.revoked_at.is_(None),
            )
        )
        if user is None:
            raise InvalidToken("The token's session has ended or its user is deactivated")
        return user

    async def login(self, email: str, password: str) -> TokenPair:
        throttle_key = email_key(email)
        retry_after = await self.throttling.locked_for(throttle_key)
        if retry_after is not None:
            # Answered before any hashing, and the same for addresses with no account.
            metrics.count_password_login("throttled")
            raise LoginThrottled(retry_after)
        user = await self._authenticate(email, password)
        if user is None:
            retry_after = await self.throttling.record_failure(throttle_key)
            # Committed now: the error that follows rolls back the request's transaction.
            await self.session.commit()
        else:
            retry_after = await self.throttling.clear(throttle_key)
        if retry_after is not None:
            # Attempts sent together all pass the check above before the first failure is
            # counted: those that finish after the lockout began are refused like later ones,
            # whether their password was right or not.
            metrics.count_password_login("throttled")
            raise LoginThrottled(retry_after)
        if user is None:
            metrics.count_password_login("invalid_credentials")
            raise invalid_grant()
        if not user.is_active:
            metrics.count_password_login("inactive")
            raise invalid_grant("The account is deactivated")
        metrics.count_password_login("success")
        return await self.start_session(user.id, grant="password")

    async def start_session(self, user_id: uuid.UUID, *, grant: str) -> TokenPair:
        """A new session for a user who has just proved who they are, and its first tokens."""
        login_session = LoginSession(id=uuid.uuid4(), user_id=user_id)
        self.session.add(login_session)
        await self.session.flush()
        return await self._issue(user_id, login_session.id, grant=grant)

    async def _authenticate(self, email: str, password: str) -> User | None:
        if len(email) > MAX_EMAIL_CHARS or len(password) > MAX_PASSWORD_CHARS:
            # No account can match, and hashing megabytes of input is a denial of service.
            return None
        user = await self.session.scalar(
            select(User).where(func.lower(User.email) == func.lower(email))
        )
        if user is None or user.password_hash is None:
            # An account made through an OpenID provider has no password until one is set.
            await self.passwords.verify_dummy(password)
            return None
        matches, updated_hash = await self.passwords.verify(password, user.password_hash)
        if not matches:
            return None
        if updated_hash is not None:
            user.password_hash = updated_hash
        return user

    async def refresh(self, refresh_token: str) -> TokenPair:
        token_hash = hash_refresh_token(refresh_token)
        # The row lock makes concurrent refreshes with one token queue here: the first spends
        # it, the others then find it spent and are treated as reuse.
        session_id = await self.session.scalar(
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == token_hash,
                RefreshToken.used_at.is_(None),
                RefreshToken.expires_at > func.now(),
            )
            .values(used_at=func.now())
            .returning(RefreshToken.session_id)
        )
        if session_id is None:
            await self._reject_unusable_refresh_token(token_hash)
        user_id = await self.session.scalar(
            select(LoginSession.user_id)
            .join(User, User.id == LoginSession.user_id)
            .where(
                LoginSession.id == session_id,
                LoginSession.revoked_at.is_(None),
                User.is_active,
            )
        )
        if user_id is None:
            raise invalid_grant("The refresh token is no longer valid")
        return await self._issue(user_id, session_id, grant="refresh_token")

    async def _reject_unusable_refresh_token(self, token_hash: bytes) -> NoReturn:
        spent_in_session = await self.session.scalar(
            select(RefreshToken.session_id).where(
                RefreshToken.token_hash == token_hash, RefreshToken.used_at.is_not(None)
            )
        )
        if spent_in_session is not None:
            # A spent token came back: whoever holds the family's newest token may be a thief,
            # so the whole family goes. Committed now, because the error that follows rolls
            # back the request's transaction.
            await self.revoke_sessions(LoginSession.id == spent_in_session, reason="reuse")
            await self.session.commit()
            metrics.REFRESH_REUSE_DETECTED.inc()
        raise invalid_grant("The refresh token is no longer valid")

    async def logout(self, refresh_token: str) -> None:
        session_id = await self.session.scalar(
            select(RefreshToken.session_id).where(
                RefreshToken.token_hash == hash_refresh_token(refresh_token)
            )
        )
        if session_id is not None:
            await self.revoke_sessions(LoginSession.id == session_id, reason="logout")

    async def update_me(self, user: User, session_id: str | None, request: UpdateMeRequest) -> User:
        if request.display_name is None and request.password is None:
            return user
        if request.display_name is not None:
            user.display_name = request.display_name
        if request.password is not None:
            assert request.current_password is not None  # the schema requires it
            matches = (
                user.password_hash is not None
                and (await self.passwords.verify(request.current_password, user.password_hash))[0]
            )
            if not matches:
                raise WrongCurrentPassword()
            user.password_hash = await self.passwords.hash(request.password)
            other_sessions = LoginSession.user_id == user.id
            if session_id is not None:
                other_sessions &= LoginSession.id != _uuid_or_nil(session_id)
            await self.revoke_sessions(other_sessions, reason="password_change")
        user.updated_at = datetime.now(UTC)
        await self.session.flush()
        return user

    async def revoke_sessions(self, condition: ColumnElement[bool], *, reason: str) -> None:
        await self.session.execute(
            update(LoginSession)
            .where(condition, LoginSession.revoked_at.is_(None))
            .values(revoked_at=func.now(), revoked_reason=reason)
        )

    async def _issue(self, user_id: uuid.UUID, session_id: uuid.UUID, *, grant: str) -> TokenPair:
        refresh_token = secrets.token_urlsafe(32)
        ttl = self.settings.refresh_token_ttl_seconds
        await self.session.execute(
            insert(RefreshToken).values(
                token_hash=hash_refresh_token(refresh_token),
                session_id=session_id,
                expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
            )
        )
        now = int(time.time())
        access_ttl = self.settings.access_token_ttl_seconds
        access_token = encode_access_token(
            {
                "iss": self.settings.jwt_issuer,
                "aud": self.settings.jwt_audience,
                "sub": str(user_id),
                "sid": str(session_id),
                "jti": uuid.uuid4().hex,
                "iat": now,
                "exp": now + access_ttl,
            },
            self.keys.active,
        )
        metrics.TOKENS_ISSUED.labels(grant=grant).inc()
        return TokenPair(access_token, refresh_token, access_ttl)


def _uuid_or_nil(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        return uuid.UUID(int=0)
