"""Per-account login throttling and the per-user lookup budget, both kept in PostgreSQL so that
every replica sees the same counts."""

import hashlib
import math
import uuid
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.config import Settings
from auth_service.models import LoginThrottle, LookupBudget

LOOKUP_WINDOW = timedelta(minutes=1)


def email_key(email: str) -> bytes:
    """The throttle's key: a hash, so that addresses that belong to no account are not kept."""
    return hashlib.sha256(email.strip().lower().encode()).digest()


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


class LoginThrottling:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings

    async def locked_for(self, key: bytes) -> int | None:
        """Seconds until `key` may try again, or None when it may try now."""
        row = (
            await self.session.execute(
                select(LoginThrottle.locked_until, func.now()).where(
                    LoginThrottle.email_hash == key, LoginThrottle.locked_until > func.now()
                )
            )
        ).first()
        if row is None:
            return None
        locked_until, now = row
        assert locked_until is not None  # the query asks for a future one
        return _seconds_until(locked_until, now)

    async def record_failure(self, key: bytes) -> int | None:
        """Count a failure; the one that reaches the limit starts a lockout, each lockout twice
        as long as the one before (up to the cap) until a quiet window resets the doubling.
        A failure that finds a lockout begun since its attempt passed `locked_for` (attempts
        sent together) is not counted: the seconds the lockout has left are returned instead."""
        settings = self.settings
        await self.session.execute(
            insert(LoginThrottle)
            .values(email_hash=key, failures=0, window_started_at=func.now(), lockouts=0)
            .on_conflict_do_nothing()
        )
        # The row lock serialises concurrent failures for one email across replicas.
        row = (
            await self.session.execute(
                select(LoginThrottle, func.now())
                .where(LoginThrottle.email_hash == key)
                .with_for_update()
            )
        ).one()
        throttle, now = row[0], row[1]
        if throttle.locked_until is not None and throttle.locked_until > now:
            return _seconds_until(throttle.locked_until, now)
        window = timedelta(seconds=settings.login_failure_window_seconds)
        if throttle.window_started_at < now - window:
            throttle.failures, throttle.window_started_at = 0, now
            if throttle.locked_until is None or throttle.locked_until < now - window:
                throttle.lockouts = 0
        throttle.failures += 1
        if throttle.failures >= settings.login_max_failures:
            lockout = min(
                settings.login_lockout_base_seconds * 2**throttle.lockouts,
                settings.login_lockout_cap_seconds,
            )
            throttle.lockouts += 1
            throttle.locked_until = now + timedelta(seconds=lockout)
            throttle.failures, throttle.window_started_at = 0, now
        await self.session.flush()
        return None

    async def clear(self, key: bytes) -> int | None:
        """Forget the failures of `key` (a good password, or a reset link); the seconds left of
        a lockout in force, if one began since the attempt passed `locked_for` (the caller
        then refuses the attempt, and its rollback keeps the row)."""
        row = (
            await self.session.execute(
                delete(LoginThrottle)
                .where(LoginThrottle.email_hash == key)
                .returning(LoginThrottle.locked_until, func.now())
            )
        ).first()
        if row is None or row.locked_until is None or row.locked_until <= row.now:
            return None
        return _seconds_until(row.locked_until, row.now)


async def spend_lookup(session: AsyncSession, user_id: uuid.UUID, per_minute: int) -> int | None:
    """Count one lookup by `user_id`; seconds to wait when over budget, else None."""
    expired = LookupBudget.window_started_at < func.now() - LOOKUP_WINDOW
    row = (
        await session.execute(
            insert(LookupBudget)
            .values(user_id=user_id, window_started_at=func.now(), lookups=1)
            .on_conflict_do_update(
                index_elements=[LookupBudget.user_id],
                set_={
                    "lookups": case((expired, 1), else_=LookupBudget.lookups + 1),
                    "window_started_at": case(
                        (expired, func.now()), else_=LookupBudget.window_started_at
                    ),
                },
            )
            .returning(LookupBudget.lookups, LookupBudget.window_started_at, func.now())
        )
    ).one()
    lookups, started, now = row
    if lookups <= per_minute:
        return None
    return _seconds_until(started + LOOKUP_WINDOW, now)
