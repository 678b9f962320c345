"""The inbox stays small with autovacuum off: the api replicas vacuum it themselves once its dead
tuples pass a bound (eventlog.vacuum)."""

import asyncio
import time

import asyncpg

from api_service.config import Settings
from devstack.testing import events_sequenced, fresh_database
from eventlog.sequencer import Sequencer
from eventlog.vacuum import vacuum_inbox_periodically
from servicekit.db import Database, asyncpg_dsn
from servicekit.supervisor import Supervisor

from .conftest import MIGRATIONS

EVENTS = 6000
BOUND = 2000


async def inbox_stats(connection: asyncpg.Connection) -> asyncpg.Record:
    row = await connection.fetchrow(
        "SELECT n_dead_tup, vacuum_count, pg_relation_size('eventlog.event_inbox') AS size"
        " FROM pg_stat_user_tables WHERE relid = 'eventlog.event_inbox'::regclass"
    )
    assert row is not None
    return row


async def run_with_bound(bound: int) -> tuple[asyncpg.Record, float]:
    """Sequence EVENTS events with autovacuum off on the inbox and the vacuum bound `bound`:
    the inbox's statistics afterwards, and the seconds until they settled."""
    async with fresh_database("vacuum", MIGRATIONS) as url:
        dsn = asyncpg_dsn(url)
        settings = Settings(
            database_url=url, inbox_vacuum_dead_rows=bound, inbox_vacuum_check_seconds=0.2
        )
        database = Database(settings)
        loops = Supervisor()
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(
                "ALTER TABLE eventlog.event_inbox SET (autovacuum_enabled = false)"
            )
            loops.spawn("vacuum_test_sequencer", Sequencer(dsn, settings, None).run)
            loops.spawn(
                "vacuum_test_inbox_vacuum",
                lambda heartbeat: vacuum_inbox_periodically(
                    database, bound, settings.inbox_vacuum_check_seconds, heartbeat
                ),
            )
            for _ in range(EVENTS // 500):
                await connection.execute(
                    "INSERT INTO eventlog.event_inbox (channel, type, data, actor_id)"
                    " SELECT 'board:x', 'task.created', '{}', gen_random_uuid()"
                    " FROM generate_series(1, 500)"
                )
            await events_sequenced(dsn, timeout=10.0)
            started = time.monotonic()
            stats = await inbox_stats(connection)
            while time.monotonic() - started < 4.0:
                await asyncio.sleep(0.2)
                stats = await inbox_stats(connection)
                if stats["vacuum_count"] and stats["n_dead_tup"] < bound:
                    break
            return stats, time.monotonic() - started
        finally:
            await loops.stop()
            await connection.close()
            await database.dispose()


async def test_the_inbox_is_vacuumed_past_its_bound_with_autovacuum_off() -> None:
    stats, seconds = await run_with_bound(BOUND)
    assert stats["vacuum_count"] >= 1
    assert stats["n_dead_tup"] < BOUND
    assert seconds < 4.0


async def test_without_the_bound_the_dead_tuples_stay() -> None:
    """The control: with a bound never reached, nothing vacuums the inbox (autovacuum off)."""
    stats, _ = await run_with_bound(10 * EVENTS)
    assert stats["vacuum_count"] == 0
    assert stats["n_dead_tup"] >= EVENTS * 0.9
