import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from fastapi import FastAPI

from api_service import boards, members, tasks
from api_service.config import Settings
from api_service.event_bus import NatsBatchBus
from api_service.outbox import prune_events
from api_service.sequencer import Sequencer
from servicekit.app import create_service_app
from servicekit.db import Database, asyncpg_dsn
from servicekit.jwks import KeySet, http_jwks_fetcher
from servicekit.revocations import RevokedUsers, follow_revocations
from servicekit.security import token_verifier_for

logger = logging.getLogger(__name__)


async def prune_events_periodically(database: Database, settings: Settings) -> None:
    retention = timedelta(seconds=settings.event_retention_seconds)
    while True:
        try:
            deleted = await prune_events(database.engine, retention)
            if deleted:
                logger.info("pruned events", extra={"deleted": deleted})
        except Exception:
            logger.exception("event pruning failed")
        await asyncio.sleep(settings.event_prune_interval_seconds)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings)
        async with httpx.AsyncClient() as http:
            keys = KeySet(http_jwks_fetcher(settings.jwks_url, http))
            app.state.db = database
            revoked = RevokedUsers(settings.revocation_window_seconds)
            app.state.token_verifier = token_verifier_for(settings, keys, revoked)
            app.state.health.add_check("database", database.check)
            app.state.health.add_check("jwks", keys.ensure_loaded)
            bus = NatsBatchBus(settings.nats_url) if settings.nats_url else None
            if bus is not None:
                bus.start()
            sequencer = Sequencer(asyncpg_dsn(settings.database_url), settings, bus)
            background = [
                asyncio.create_task(prune_events_periodically(database, settings)),
                asyncio.create_task(sequencer.run(), name="sequencer"),
                asyncio.create_task(
                    follow_revocations(database, revoked, settings.revocation_poll_seconds),
                    name="revocations",
                ),
            ]
            try:
                yield
            finally:
                for task in background:
                    task.cancel()
                for task in background:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if bus is not None:
                    await bus.close()
                await database.dispose()

    return create_service_app(
        title="api-service",
        description="Boards, members and tasks; every write appends change events.",
        prefix="/api",
        settings=settings,
        routers=[tasks.board_tasks_router, tasks.router, boards.router, members.router],
        lifespan=lifespan,
    )


app = create_app()
