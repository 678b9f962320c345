"""Issue 21's JIT trap: on stale statistics PostgreSQL JIT-compiled the sequencer's batch
statement on every run (200 ms instead of 0.2 ms). The services' sessions run with JIT off, and
the statement's estimate stays small whatever the statistics say."""

import asyncio
import json
from contextlib import suppress
from typing import Any

import asyncpg
import pytest

from api_service.config import Settings
from devstack.testing import fresh_database
from eventlog import sequencer
from eventlog.sequencer import Sequencer
from servicekit.db import Database, asyncpg_dsn
from servicekit.supervisor import Heartbeat

from .conftest import MIGRATIONS

JIT_ABOVE_COST = 100_000  # PostgreSQL's default jit_above_cost


async def test_the_services_sessions_run_with_jit_off(monkeypatch: pytest.MonkeyPatch) -> None:
    requested: list[dict[str, str]] = []  # the sequencer's connections' session settings
    connected = asyncio.Event()
    connect = asyncpg.connect

    async def recording_connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
        connection = await connect(*args, **kwargs)
        settings = kwargs.get("server_settings") or {}
        if settings.get("application_name") == "api-sequencer":
            requested.append(settings)
            connected.set()
        return connection

    async with fresh_database("nojit", MIGRATIONS) as url:
        settings = Settings(database_url=url)
        database = Database(settings)
        try:
            async with database.engine.connect() as conn:
                assert (await conn.exec_driver_sql("SHOW jit")).scalar() == "off"
            async with database.acquire() as connection:
                assert await connection.fetchval("SHOW jit") == "off"
        finally:
            await database.dispose()
        # The sequencer's own connection: one session, ended by cancelling it.
        monkeypatch.setattr(sequencer.asyncpg, "connect", recording_connect)
        heartbeat = Heartbeat("jit_test")
        running = asyncio.create_task(Sequencer(asyncpg_dsn(url), settings, None).run(heartbeat))
        try:
            await asyncio.wait_for(connected.wait(), 5)
            assert requested[0]["jit"] == "off"
        finally:
            running.cancel()
            with suppress(asyncio.CancelledError):
                await running


async def test_the_batch_statement_stays_cheap_on_stale_statistics() -> None:
    """100,000 rows inserted into the inbox and deleted, never vacuumed nor analysed (autovacuum
    off, as on the machine of issue 21): the generic plan of the batch statement, with JIT on
    in this session, stays far below jit_above_cost. With the former cross join against the
    lease table it cost 612,107 (and was JIT-compiled); now about 2,700."""
    async with fresh_database("stale", MIGRATIONS) as url:
        connection = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await connection.execute(
                "ALTER TABLE eventlog.event_inbox SET (autovacuum_enabled = false);"
                "ALTER TABLE eventlog.sequencer_lease SET (autovacuum_enabled = false)"
            )
            await connection.execute(
                "INSERT INTO eventlog.event_inbox (channel, type, data, actor_id)"
                " SELECT 'board:x', 'task.created', '{}', gen_random_uuid()"
                " FROM generate_series(1, 100000)"
            )
            await connection.execute("DELETE FROM eventlog.event_inbox")
            for statement in (sequencer._MOVE_AND_RETURN, sequencer._MOVE_AND_NOTIFY):
                async with connection.transaction():
                    await connection.execute(
                        "SET LOCAL jit = on; SET LOCAL plan_cache_mode = force_generic_plan"
                    )
                    plan = json.loads(
                        await connection.fetchval("EXPLAIN (FORMAT JSON) " + statement, 1000)
                    )[0]
                assert plan["Plan"]["Total Cost"] < JIT_ABOVE_COST / 10, plan["Plan"]
                assert "JIT" not in plan
        finally:
            await connection.close()
