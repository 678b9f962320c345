import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial

import httpx
from fastapi import FastAPI

from api_service import boards, comments, members, tasks
from api_service.config import Settings
from eventlog import backlog
from eventlog.publisher import NatsBatchBus
from eventlog.retention import prune_events_periodically
from eventlog.revocations import RevokedUsers, follow_revocations
from eventlog.sequencer import Sequencer
from eventlog.vacuum import vacuum_inbox_periodically
from servicekit.app import create_service_app
from servicekit.db import CONNECTION_ERRORS, Database, asyncpg_dsn
from servicekit.jwks import KeySet, http_jwks_fetcher
from servicekit.security import token_verifier_for
from servicekit.supervisor import Supervisor

logger = logging.getLogger(__name__)


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
            sequencer = Sequencer(asyncpg_dsn(settings.database_url), settings, bus)
            # Every background loop runs supervised: one that fails is logged and restarted,
            # and readiness fails while an essential one makes no progress (issue 21).
            loops = Supervisor()
            app.state.supervisor = loops
            app.state.health.add_check("background_loops", loops.check)
            # The backlog is measured on every scrape, independent of the sequencer's health.
            backlog.COLLECTOR.probe = backlog.BacklogProbe(database)
            if bus is not None:
                loops.spawn("event_bus", bus.run, essential=False, stale_after=30.0)
            # A poll answers every `sequencer_poll_max_seconds`, a follower tries the lease
            # every third of a lease: stalled after two leases without one.
            loops.spawn(
                "sequencer",
                sequencer.run,
                stale_after=max(2 * settings.sequencer_lease_seconds, 5.0),
                transient=CONNECTION_ERRORS,
            )
            loops.spawn(
                "revocations",
                partial(follow_revocations, database, revoked, settings.revocation_poll_seconds),
                stale_after=max(10 * settings.revocation_poll_seconds, 10.0),
                transient=CONNECTION_ERRORS,
            )
            loops.spawn(
                "inbox_vacuum",
                partial(
                    vacuum_inbox_periodically,
                    database,
                    settings.inbox_vacuum_dead_rows,
                    settings.inbox_vacuum_check_seconds,
                ),
                essential=False,
                stale_after=3.0 * settings.inbox_vacuum_check_seconds + 60.0,
                transient=CONNECTION_ERRORS,
            )
            loops.spawn(
                "event_pruner",
                partial(
                    prune_events_periodically,
                    database,
                    timedelta(seconds=settings.event_retention_seconds),
                    settings.event_prune_interval_seconds,
                ),
                essential=False,
                stale_after=3.0 * settings.event_prune_interval_seconds + 60.0,
                transient=CONNECTION_ERRORS,
            )
            try:
                yield
            finally:
                await loops.stop()
                backlog.COLLECTOR.probe = None
                if bus is not None:
                    await bus.close()
                await database.dispose()

    return create_service_app(
        title="api-service",
        description="Boards, members, tasks and comments; every write appends change events.",
        prefix="/api",
        settings=settings,
        routers=[
            tasks.board_tasks_router,
            tasks.router,
            comments.router,
            boards.router,
            members.router,
        ],
        lifespan=lifespan,
    )


app = create_app()
