"""Readiness after every backend of the database was terminated (issue 21: api's and realtime's
readiness said `not_ready (database)` for ~50 s while requests succeeded, because a dead pooled
connection is found only when a check happens to draw it). The check validates its connection
and starts afresh when a pooled one is dead, so it tells the truth within a probe interval."""

import asyncio
import time

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from devstack.testing import LaggingFinProxy, fresh_database
from servicekit.db import Database, asyncpg_dsn
from servicekit.settings import ServiceSettings

# Left out of `make test-fast` (docs/testing.md): every database backend killed.
pytestmark = pytest.mark.slow

PROBE_INTERVAL = 0.2


async def terminate_backends(url: str) -> int:
    name = make_url(url).database
    admin = await asyncpg.connect(asyncpg_dsn(url, "postgres"))
    try:
        killed: int = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
            name,
        )
        return killed
    finally:
        await admin.close()


async def warm(database: Database, connections: int) -> None:
    """Open `connections` pooled connections in each of the database's pools."""

    async def engine_query() -> None:
        async with database.engine.connect() as conn:
            await conn.execute(text("SELECT pg_sleep(0.05)"))

    async def pool_query() -> None:
        async with database.acquire() as connection:
            await connection.execute("SELECT pg_sleep(0.05)")

    await asyncio.gather(*(q() for q in (engine_query, pool_query) for _ in range(connections)))


async def seconds_until_ready(database: Database, timeout: float) -> float:
    started = time.monotonic()
    while True:
        try:
            await asyncio.wait_for(database.check(), 2.0)
            return time.monotonic() - started
        except Exception:
            assert time.monotonic() - started < timeout, "readiness never came back"
            await asyncio.sleep(PROBE_INTERVAL)


async def test_readiness_is_true_again_within_a_probe_after_every_backend_is_killed() -> None:
    async with (
        fresh_database("readykill") as url,
        # The server's FIN held back 5 s: half-open connections for longer than readiness may
        # lie, as when the end of stream is late or lost on the way (the FATAL message still
        # arrives).
        LaggingFinProxy(
            make_url(url).host or "127.0.0.1", make_url(url).port or 5432, fin_lag=5.0
        ) as proxy,
    ):
        settings = ServiceSettings(database_url=proxy.dsn(url), db_pool_size=5)
        database = Database(settings)
        try:
            await warm(database, 5)
            await database.check()
            for _ in range(2):
                assert await terminate_backends(url) >= 5
                await asyncio.sleep(0.05)  # the FATAL messages are read; the FINs are not
                assert await seconds_until_ready(database, timeout=10.0) < 2.0
                # And requests on both pools work again at once, on new connections.
                await warm(database, 5)
        finally:
            await database.dispose()
