"""Rows whose time has passed are deleted, so that the tables every failed login, lookup and
mailed link or sign-in adds to stay small. Any replica may run it: the deletes are idempotent."""

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import delete, func, or_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth_service.config import Settings
from auth_service.models import (
    ActionToken,
    LoginThrottle,
    LookupBudget,
    OidcFlow,
    SignInCode,
    WebAuthnChallenge,
)
from auth_service.throttle import LOOKUP_WINDOW
from servicekit.outage import is_database_unavailable, outage
from servicekit.supervisor import Heartbeat

logger = logging.getLogger(__name__)


async def prune(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    window = timedelta(seconds=settings.login_failure_window_seconds)
    async with sessionmaker() as session, session.begin():
        # A throttle row whose window has passed, and whose last lockout ended a window ago, is
        # one `record_failure` would start afresh: deleting it changes nothing.
        await session.execute(
            delete(LoginThrottle).where(
                LoginThrottle.window_started_at < func.now() - window,
                or_(
                    LoginThrottle.locked_until.is_(None),
                    LoginThrottle.locked_until < func.now() - window,
                ),
            )
        )
        await session.execute(
            delete(LookupBudget).where(LookupBudget.window_started_at < func.now() - LOOKUP_WINDOW)
        )
        await session.execute(delete(ActionToken).where(ActionToken.expires_at < func.now()))
        # Sign-ins begun at a provider and never finished, and sign-in codes never exchanged.
        await session.execute(delete(OidcFlow).where(OidcFlow.expires_at < func.now()))
        await session.execute(delete(SignInCode).where(SignInCode.expires_at < func.now()))
        await session.execute(
            delete(WebAuthnChallenge).where(WebAuthnChallenge.expires_at < func.now())
        )


async def prune_periodically(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, heartbeat: Heartbeat
) -> None:
    """`prune` every `housekeeping_interval_seconds`, until cancelled; `heartbeat` beats after
    every round that succeeded."""
    while True:
        await asyncio.sleep(settings.housekeeping_interval_seconds)
        try:
            await prune(sessionmaker, settings)
            heartbeat.beat()
        except Exception as exc:
            # The next round tries again: an outage is logged once, anything else each time.
            if is_database_unavailable(exc):
                outage.began(exc)
            else:
                logger.warning("housekeeping failed", extra={"err": repr(exc)})
