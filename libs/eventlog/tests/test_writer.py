"""The writer on its three paths: each event reaches the inbox in the caller's transaction, and
the after-commit (the metric, the sequencer's nudge) happens by itself after a commit and never
after a rollback."""

import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from eventlog.tables import INBOX
from eventlog.types import EventType, UnregisteredEventType, declare
from eventlog.writer import (
    APPENDED_TYPES,
    Event,
    append_events,
    appending_events,
    on_events_committed,
    statement_appending,
    type_param,
)
from servicekit.db import (
    Autocommit,
    Connection,
    Database,
    _request_transaction,
    asyncpg_dsn,
)
from servicekit.settings import ServiceSettings

WRITER_TEST = declare("writer.test")


def written(event_type: EventType) -> float | None:
    """The type's `api_events_written_total`; None when it has no series."""
    return REGISTRY.get_sample_value("api_events_written_total", {"type": event_type.name})


@pytest.fixture
def nudges() -> Iterator[list[None]]:
    calls: list[None] = []
    stop = on_events_committed(lambda: calls.append(None))
    yield calls
    stop()


async def inbox_rows(dsn: str, channel: str) -> list[str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(f"SELECT type FROM {INBOX} WHERE channel = $1", channel)
    finally:
        await connection.close()
    return [row["type"] for row in rows]


async def test_declaring_a_type_creates_its_series_and_a_name_is_declared_once() -> None:
    # The series exists from the declaration on, before any event of the type is written.
    assert written(WRITER_TEST) == 0
    assert written(EventType("never.declared")) is None
    with pytest.raises(ValueError, match="declared twice"):
        declare("writer.test")


async def test_an_undeclared_type_is_refused(database_url: str) -> None:
    dsn = asyncpg_dsn(database_url)
    connection = await asyncpg.connect(dsn)
    channel = f"test:{uuid.uuid4()}"
    try:
        with pytest.raises(UnregisteredEventType):
            async with connection.transaction():
                await append_events(
                    Connection(connection), uuid.uuid4(), [Event(channel, EventType("nope"), {})]
                )
    finally:
        await connection.close()
    assert await inbox_rows(dsn, channel) == []


def request_on(database: Database) -> Any:
    """What servicekit.db's request dependencies read of a request."""
    return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(db=database)))


async def test_asyncpg_path_counts_after_commit_and_not_after_rollback(
    database_url: str, nudges: list[None]
) -> None:
    database = Database(ServiceSettings(database_url=database_url))
    channel = f"test:{uuid.uuid4()}"
    before = written(WRITER_TEST)
    try:
        # The request's transaction (TransactionDep), rolled back by an error, then committed.
        failing = _request_transaction(request_on(database))
        db = await anext(failing)
        await append_events(db, uuid.uuid4(), [Event(channel, WRITER_TEST, {"n": 0})])
        with pytest.raises(RuntimeError):
            await failing.athrow(RuntimeError("the route failed"))
        assert (written(WRITER_TEST), nudges) == (before, [])
        succeeding = _request_transaction(request_on(database))
        db = await anext(succeeding)
        await append_events(db, uuid.uuid4(), [Event(channel, WRITER_TEST, {"n": 1})])
        assert nudges == []  # not before the commit
        with pytest.raises(StopAsyncIteration):
            await anext(succeeding)
    finally:
        await database.dispose()
    assert written(WRITER_TEST) == before + 1
    assert len(nudges) == 1
    assert await inbox_rows(asyncpg_dsn(database_url), channel) == ["writer.test"]


async def test_session_path_counts_after_commit_and_not_after_rollback(
    database_url: str, nudges: list[None]
) -> None:
    engine = create_async_engine(database_url)
    channel = f"test:{uuid.uuid4()}"
    before = written(WRITER_TEST)
    try:
        async with AsyncSession(engine) as session:
            await append_events(session, uuid.uuid4(), [Event(channel, WRITER_TEST, {})] * 2)
            await session.rollback()
        assert (written(WRITER_TEST), nudges) == (before, [])
        async with AsyncSession(engine) as session:
            await append_events(session, uuid.uuid4(), [Event(channel, WRITER_TEST, {})] * 2)
            await session.execute(text("SELECT 1"))
            await session.commit()
    finally:
        await engine.dispose()
    assert written(WRITER_TEST) == before + 2
    assert len(nudges) == 1
    assert await inbox_rows(asyncpg_dsn(database_url), channel) == ["writer.test"] * 2


WRITE_IN_ONE_STATEMENT = statement_appending(
    text(
        f"""
        WITH new_events AS (
            SELECT CAST(:channel AS text) AS channel,
                CAST(:{type_param(WRITER_TEST)} AS text) AS type,
                CAST('{{}}' AS jsonb) AS data, 1 AS n
            WHERE CAST(:write AS boolean)
        ),
        {appending_events("new_events")}
        SELECT {APPENDED_TYPES}
        """
    ),
    [WRITER_TEST],
)


async def test_single_statement_path_counts_by_itself(
    database_url: str, nudges: list[None]
) -> None:
    database = Database(ServiceSettings(database_url=database_url))
    channel = f"test:{uuid.uuid4()}"
    before = written(WRITER_TEST)
    try:
        runner = Autocommit(database)
        await runner.fetchrow(
            WRITE_IN_ONE_STATEMENT, channel=channel, write=False, actor_id=str(uuid.uuid4())
        )
        assert (written(WRITER_TEST), nudges) == (before, [])  # nothing written, nothing told
        await runner.fetchrow(
            WRITE_IN_ONE_STATEMENT, channel=channel, write=True, actor_id=str(uuid.uuid4())
        )
        with pytest.raises(TypeError, match="fetchrow"):
            await runner.fetchval(WRITE_IN_ONE_STATEMENT, channel=channel, write=True)
    finally:
        await database.dispose()
    assert written(WRITER_TEST) == before + 1
    assert len(nudges) == 1
    assert await inbox_rows(asyncpg_dsn(database_url), channel) == ["writer.test"]


async def test_a_statement_may_name_only_declared_types() -> None:
    with pytest.raises(UnregisteredEventType):
        statement_appending(text("SELECT 1"), [EventType("undeclared.type")])
