import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType

import httpx
from fastapi import FastAPI

from eventlog.revocations import RevokedUsers
from realtime_service import routes, sse, ws
from realtime_service.config import Settings
from realtime_service.hub import Hub
from servicekit.app import create_service_app
from servicekit.db import Database, asyncpg_dsn
from servicekit.health import Health
from servicekit.jwks import KeySet, http_jwks_fetcher
from servicekit.security import token_verifier_for

logger = logging.getLogger(__name__)

SERVER_RESTARTING = 1012


def drain_on_sigterm(hub: Hub, health: Health) -> Callable[[], None]:
    """On SIGTERM, end every stream before uvicorn starts waiting for them to finish.

    uvicorn waits for open responses (SSE streams never finish by themselves) before it runs
    the lifespan shutdown, so draining there would come too late. The handler marks the
    service not ready, tells every connection to close (SSE `disconnect`, WebSocket 1012),
    then hands the signal on to uvicorn. Returns a function that restores the old handler.
    """
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)

    def begin_drain() -> None:
        health.draining = True
        hub.close_all(SERVER_RESTARTING, "server restarting: reconnect and resume")

    def handle(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(begin_drain)
        if callable(previous):
            previous(signum, frame)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    signal.signal(signal.SIGTERM, handle)
    return restore


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings)
        revoked = RevokedUsers(settings.revocation_window_seconds)
        hub = Hub(
            asyncpg_dsn(settings.database_url),
            settings.poll_interval_seconds,
            settings.nats_url,
            revoked,
        )
        await hub.start()
        health: Health = app.state.health
        async with httpx.AsyncClient() as http:
            keys = KeySet(http_jwks_fetcher(settings.jwks_url, http))
            app.state.db = database
            app.state.hub = hub
            app.state.token_verifier = token_verifier_for(settings, keys, revoked)
            health.add_check("database", database.check)
            health.add_check("jwks", keys.ensure_loaded)
            health.add_check("log_listener", hub.ensure_listening)
            health.add_check("background_loops", hub.loops.check)
            app.state.supervisor = hub.loops
            restore_signal = drain_on_sigterm(hub, health)
            try:
                yield
            finally:
                restore_signal()
                health.draining = True
                hub.close_all(SERVER_RESTARTING, "server restarting: reconnect and resume")
                await hub.stop()
                await database.dispose()

    return create_service_app(
        title="realtime-service",
        description="Live events over SSE and WebSocket, resumable, plus ephemeral messages.",
        prefix="/realtime",
        settings=settings,
        routers=[routes.router, sse.router, ws.router],
        lifespan=lifespan,
    )


app = create_app()
