"""api-service's background loops when every backend of its database is terminated
(`pg_terminate_backend`, as a failover, a pooler restart or an operator does), on a real
api-service process whose database connections pass through a proxy that hands on the server's
end of stream a little late (`LaggingFinProxy`): the driver then reads the server's FATAL
message before it learns the connection is gone, the window in which issue 21's sequencer died.
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from api_service.config import Settings
from devstack.testing import (
    LaggingFinProxy,
    ServiceProcess,
    free_port,
    fresh_database,
    uvicorn_service,
)
from eventlog.backlog import PROBE_TIMEOUT_SECONDS, BacklogProbe, _BacklogCollector
from eventlog.sequencer import Sequencer
from servicekit.db import Database, asyncpg_dsn
from servicekit.supervisor import Supervisor

from .conftest import MIGRATIONS

# Left out of `make test-fast` (docs/testing.md): every database backend killed under a process.
pytestmark = pytest.mark.slow

LEASE_SECONDS = 2.0
RESUME_SECONDS = 5.0


@dataclass
class Stack:
    dsn: str  # straight to PostgreSQL, for the test's own connections
    name: str
    api: ServiceProcess


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with AsyncExitStack() as exits:
        url = await exits.enter_async_context(fresh_database("bgfault", MIGRATIONS))
        parsed = make_url(url)
        proxy = await exits.enter_async_context(
            LaggingFinProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
        )
        env = {
            "DATABASE_URL": proxy.dsn(url),
            "LOG_LEVEL": "WARNING",
            # Nothing answers there: readiness is not under test here, liveness is.
            "JWKS_URL": f"http://127.0.0.1:{free_port()}/jwks.json",
            "SEQUENCER_LEASE_SECONDS": str(LEASE_SECONDS),
        }
        api = await exits.enter_async_context(
            uvicorn_service("api_service.main:app", env, ready_path="/healthz")
        )
        yield Stack(asyncpg_dsn(url), parsed.database or "", api)


async def terminate_backends(stack: Stack) -> int:
    """Terminate every backend connected to the stack's database; how many there were."""
    admin = await asyncpg.connect(asyncpg_dsn(stack.dsn, "postgres"))
    try:
        killed: int = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
            stack.name,
        )
        return killed
    finally:
        await admin.close()


async def lease_held(dsn: str, timeout: float = 10.0) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while not await connection.fetchval(
            "SELECT EXISTS (SELECT FROM eventlog.sequencer_lease"
            " WHERE expires_at > clock_timestamp())"
        ):
            assert time.monotonic() < deadline, "the sequencer never took the lease"
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


class Writer:
    """Inserts numbered events into the inbox (as a write's transaction does) until stopped,
    reconnecting when its own connection is terminated; `written` counts the committed ones."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.written = 0
        self.stop = asyncio.Event()
        self.paused = False

    async def run(self) -> None:
        while not self.stop.is_set():
            try:
                connection = await asyncpg.connect(self.dsn)
                try:
                    while not self.stop.is_set():
                        if self.paused:
                            await asyncio.sleep(0.01)
                            continue
                        await connection.execute(
                            "INSERT INTO eventlog.event_inbox (channel, type, data, actor_id)"
                            " VALUES ('board:faults', 'task.created', $1::jsonb,"
                            " gen_random_uuid())",
                            json.dumps({"n": self.written}),
                        )
                        self.written += 1
                        await asyncio.sleep(0.01)
                finally:
                    connection.terminate()
            except Exception:  # any way the kill surfaces in the driver
                await asyncio.sleep(0.02)


async def inbox_drained(dsn: str, timeout: float) -> float:
    """Seconds until the inbox is empty; fails after `timeout`."""
    connection = await asyncpg.connect(dsn)
    try:
        started = time.monotonic()
        while rows := await connection.fetchval("SELECT count(*) FROM eventlog.event_inbox"):
            assert time.monotonic() - started < timeout, (
                f"{rows} events still wait in the inbox {timeout} s on: delivery stopped"
            )
            await asyncio.sleep(0.02)
        return time.monotonic() - started
    finally:
        await connection.close()


async def logged_numbers(dsn: str) -> list[int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT id, data FROM eventlog.events ORDER BY id")
    finally:
        await connection.close()
    assert [row["id"] for row in rows] == list(range(1, len(rows) + 1)), "log ids not dense"
    return [json.loads(row["data"])["n"] for row in rows]


async def metrics(api: ServiceProcess) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{api.url}/metrics")).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def test_sequencer_survives_every_backend_of_its_database_terminated(stack: Stack) -> None:
    """Issue 21: the sequencer died at the kill ("sequencer lease lost" and nothing more) and
    no event was moved into the log again. Now it is back within a reconnect, every event is
    in the log once and in commit order, and the restart is counted."""
    await lease_held(stack.dsn)
    writer = Writer(stack.dsn)
    writing = asyncio.create_task(writer.run())
    try:
        for _ in range(2):
            await asyncio.sleep(0.5)
            # The kill finds the sequencer between statements, polling an empty inbox: where
            # a half-dead connection failed it with asyncpg's InternalClientError.
            writer.paused = True
            await inbox_drained(stack.dsn, RESUME_SECONDS)
            await asyncio.sleep(0.2)
            assert await terminate_backends(stack) >= 1
            writer.paused = False
            await asyncio.sleep(0.5)
            # Written before and after the kill: all of it is in the log within a reconnect.
            await inbox_drained(stack.dsn, RESUME_SECONDS)
    except AssertionError:
        print(stack.api.output()[-4000:])  # what the service logged, shown on failure
        raise
    finally:
        writer.stop.set()
        await writing
    await inbox_drained(stack.dsn, RESUME_SECONDS)
    assert await logged_numbers(stack.dsn) == list(range(writer.written))
    samples = await metrics(stack.api)
    assert samples['servicekit_loop_restarts_total{loop="sequencer"}'] >= 1
    assert samples['servicekit_loop_up{loop="sequencer"}'] == 1


async def test_the_backlog_is_measured_with_no_sequencer_running(stack: Stack) -> None:
    """The lease is held by a replica that does nothing (as when every sequencer is dead):
    the scrape still reports the waiting rows and their growing age, so the lag alert fires."""
    await lease_held(stack.dsn)
    connection = await asyncpg.connect(stack.dsn)
    try:
        await connection.execute(
            "UPDATE eventlog.sequencer_lease SET holder = 'gone:1:dead', epoch = epoch + 1,"
            " expires_at = clock_timestamp() + interval '1 hour'"
        )
        await connection.execute(
            "INSERT INTO eventlog.event_inbox (channel, type, data, actor_id)"
            " SELECT 'board:x', 'task.created', '{}', gen_random_uuid() FROM generate_series(1, 7)"
        )
        await asyncio.sleep(1.5)
        first = await metrics(stack.api)
        await asyncio.sleep(1.0)
        second = await metrics(stack.api)
    finally:
        await connection.close()
    assert first["api_outbox_sequencer_leader"] == 0
    assert first["api_outbox_backlog_probe_success"] == 1
    assert first["api_outbox_inbox_rows"] == 7
    assert first["api_outbox_sequencer_lag_seconds"] >= 1.0
    assert (
        second["api_outbox_sequencer_lag_seconds"]
        >= first["api_outbox_sequencer_lag_seconds"] + 0.5
    )


async def test_a_scrape_answers_in_bounded_time_with_the_database_unreachable() -> None:
    """A database that accepts connections and never answers: the backlog is left out (not
    reported as empty) and the scrape still answers within the probe's bound."""
    hung: list[asyncio.StreamWriter] = []

    async def never_answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung.append(writer)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    database = Database(
        Settings(database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{port}/nowhere")
    )
    probe = BacklogProbe(database)
    try:
        started = time.monotonic()
        measured = await asyncio.to_thread(probe.collect_now)
        elapsed = time.monotonic() - started
    finally:
        server.close()
        for writer in hung:
            writer.close()
        await database.dispose()
    assert measured is None
    assert elapsed < PROBE_TIMEOUT_SECONDS + 0.6
    names = [(metric.name, len(metric.samples)) for metric in _BacklogCollector._families(measured)]
    assert names == [
        ("api_outbox_inbox_rows", 0),
        ("api_outbox_sequencer_lag_seconds", 0),
        ("api_outbox_backlog_probe_success", 1),
    ]


async def test_after_a_reconnect_the_sequencer_takes_its_own_lease_back_at_once() -> None:
    """A dropped connection delays events by a reconnect, not by a lease: the new session (same
    holder) takes its own unexpired lease back, with a new epoch that fences the old one."""
    lease = 10.0
    async with fresh_database("retake", MIGRATIONS) as url:
        dsn = asyncpg_dsn(url)
        settings = Settings(database_url=url, sequencer_lease_seconds=lease)
        loops = Supervisor()
        loops.spawn("retake_sequencer", Sequencer(dsn, settings, None).run)
        connection = await asyncpg.connect(dsn)
        try:
            await lease_held(dsn)
            epoch = await connection.fetchval("SELECT epoch FROM eventlog.sequencer_lease")
            await connection.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'api-sequencer' AND datname = current_database()"
            )
            killed = time.monotonic()
            await connection.execute(
                "INSERT INTO eventlog.event_inbox (channel, type, data, actor_id)"
                " VALUES ('board:x', 'task.created', '{}', gen_random_uuid())"
            )
            await inbox_drained(dsn, timeout=lease)
            resumed = time.monotonic() - killed
            row = await connection.fetchrow("SELECT holder, epoch FROM eventlog.sequencer_lease")
        finally:
            await connection.close()
            await loops.stop()
    assert row is not None
    assert row["epoch"] == epoch + 1
    assert resumed < 2.0, f"events waited {resumed:.1f} s for the sequencer's own lease"


async def sequencer_activity(dsn: str, condition: str, timeout: float = 10.0) -> None:
    """Wait until the sequencer's backend matches `condition` (SQL on pg_stat_activity, one of
    this file's own)."""
    activity = (
        "pg_stat_activity WHERE application_name = 'api-sequencer' AND datname = current_database()"
    )
    query = f"SELECT EXISTS (SELECT FROM {activity} AND {condition})"  # noqa: S608
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while not await connection.fetchval(query):
            assert time.monotonic() < deadline, f"the sequencer never showed {condition}"
            await asyncio.sleep(0.005)
    finally:
        await connection.close()


@pytest.mark.parametrize("moment", ["batch", "renewal"])
async def test_a_kill_while_a_batch_or_a_renewal_runs(stack: Stack, moment: str) -> None:
    """Every backend terminated (a) while the sequencer's batch statement runs (made slow by a
    trigger), (b) while its lease renewal waits for the lease row (locked by the test): the
    events are all in the log within 5 s, once and in commit order."""
    await lease_held(stack.dsn)
    connection = await asyncpg.connect(stack.dsn)
    locker = await asyncpg.connect(stack.dsn)
    writer = Writer(stack.dsn)
    try:
        if moment == "batch":
            await connection.execute(
                "CREATE FUNCTION api.slow_batch() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$;"
                "CREATE TRIGGER slow_batch AFTER INSERT ON eventlog.events"
                " FOR EACH STATEMENT EXECUTE FUNCTION api.slow_batch()"
            )
            writing = asyncio.create_task(writer.run())
            await sequencer_activity(stack.dsn, "state = 'active' AND query LIKE '%settled AS%'")
        else:
            writing = asyncio.create_task(writer.run())
            writer.paused = True  # an idle inbox: the sequencer only renews its lease
            transaction = locker.transaction()
            await transaction.start()
            await locker.execute("SELECT FROM eventlog.sequencer_lease FOR UPDATE")
            await sequencer_activity(stack.dsn, "wait_event_type = 'Lock'")
        assert await terminate_backends(stack) >= 2
        killed = time.monotonic()
        writer.paused = False
        await asyncio.sleep(1.0)
        writer.stop.set()
        await writing
        if moment == "batch":
            await connection.close()
            connection = await asyncpg.connect(stack.dsn)
            await connection.execute("DROP TRIGGER slow_batch ON eventlog.events")
        # Within 5 s of the kill (the writes stopped a second after it).
        await inbox_drained(stack.dsn, RESUME_SECONDS - (time.monotonic() - killed))
    finally:
        writer.stop.set()
        locker.terminate()
        connection.terminate()
    assert writer.written > 0
    assert await logged_numbers(stack.dsn) == list(range(writer.written))
    samples = await metrics(stack.api)
    assert samples['servicekit_loop_restarts_total{loop="sequencer"}'] >= 1
