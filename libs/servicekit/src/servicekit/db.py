"""Async engine, per-request transactions that commit on success, and database admin helpers.

Ways to reach the database in a request:
- `SessionDep`, an ORM `AsyncSession` on the SQLAlchemy engine, in a transaction: convenient,
  about 0.3 ms of CPU per statement on the project machine;
- `TransactionDep`, a connection of the plain asyncpg pool in a transaction, running SQLAlchemy
  Core statements compiled once at import (`Statement`): the hot paths, at a fraction of that;
- `AutocommitDep`, no BEGIN/COMMIT: each statement runs on a pooled connection as its own
  transaction, for reads and for a write done in one statement.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any, Protocol, cast

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from servicekit.outage import outage
from servicekit.settings import ServiceSettings

_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]

SERVER_SETTINGS: dict[str, str] = {"jit": "off"}
"""Session settings of every connection the services open. JIT off: OLTP statements never gain
from it, and on stale statistics (autovacuum off or behind) PostgreSQL compiled the sequencer's
batch statement on every run: 200 ms, of which JIT 179 ms, against 0.1-0.2 ms without (issue
21). `session_settings` adds a connection's own to these."""


def session_settings(**extra: str) -> dict[str, str]:
    return {**SERVER_SETTINGS, **extra}


CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # What a connection raises on its next statement when its backend was terminated while it
    # was idle and the end of stream has not arrived yet: the server's FATAL message put the
    # protocol in its error state without closing the connection ("cannot switch to state 12;
    # another operation (2) is in progress"). Issue 21: the sequencer caught the three above
    # and died of this one.
    asyncpg.exceptions.InternalClientError,
)
"""How a lost or refused database connection surfaces from asyncpg: a supervised loop that
fails with one of these is logged as a warning without a traceback (servicekit.supervisor),
and restarted."""


PROBE_TIMEOUT_SECONDS = 0.8
"""How long the readiness probe waits on a pooled connection before it starts afresh (the
health check allows 2 s in all)."""


DISPOSE_TIMEOUT_SECONDS = 2.0


class Database:
    """The SQLAlchemy engine (ORM sessions, admin work, readiness) and, for the hot paths that
    run compiled statements, a plain asyncpg pool. Each pool opens connections only when they
    are first needed, so a service holds connections in the pools it uses."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.engine: AsyncEngine = create_async_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            # No pre-ping: it costs a round trip per request; asyncpg reports a dead
            # connection on use and the pool then replaces it.
            pool_recycle=3600,
            connect_args={"server_settings": session_settings()},
            # Error messages never carry statement parameters: they hold password hashes,
            # emails and token hashes, and errors reach the log.
            hide_parameters=True,
        )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self._dsn = asyncpg_dsn(settings.database_url)
        self._pool_size = settings.db_pool_size
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()

    async def _asyncpg_pool(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=0,
                    max_size=self._pool_size,
                    reset=_keep_session,
                    server_settings=session_settings(),
                )
            return self._pool

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled asyncpg connection, for as long as the block runs."""
        pool = self._pool or await self._asyncpg_pool()
        async with pool.acquire() as connection:
            yield connection
        if outage.ongoing:
            outage.ended()

    async def check(self) -> None:
        """A readiness check: raises unless the database answers on a connection validated now.

        A pooled connection whose backend was terminated is found only when drawn, and one
        whose end of stream has not arrived yet fails oddly or hangs (issue 21: readiness said
        `not_ready (database)` for ~50 s after every backend was terminated, while requests
        succeeded). So when the pooled probe fails or does not answer within
        `PROBE_TIMEOUT_SECONDS`, every connection both pools opened before is treated as
        suspect: the engine's pool is replaced and the asyncpg pool's connections expired (both
        reconnect on their next use, requests included), and the probe is repeated on a new
        connection, whose answer is the truth."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                await self._select_one()
        except Exception:
            await self.renew_pools()
            await self._select_one()
        if outage.ongoing:
            outage.ended()

    async def _select_one(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def renew_pools(self) -> None:
        """Open new connections from now on: the engine gets a new pool (connections checked
        out of the old one finish their work; the old pool's idle ones are dropped without a
        goodbye, which a dead connection could hang on), and the asyncpg pool replaces each
        connection at its next acquire."""
        await self.engine.dispose(close=False)
        if self._pool is not None:
            await self._pool.expire_connections()

    async def dispose(self) -> None:
        if self._pool is not None:
            # A graceful close waits on each connection, and one left half-open (its backend
            # terminated, the end of stream not arrived) would hold shutdown until it does.
            try:
                await asyncio.wait_for(self._pool.close(), DISPOSE_TIMEOUT_SECONDS)
            except TimeoutError:
                self._pool.terminate()
        try:
            await asyncio.wait_for(self.engine.dispose(), DISPOSE_TIMEOUT_SECONDS)
        except TimeoutError:
            await self.engine.dispose(close=False)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The pool's reset hook. asyncpg still rolls back a transaction left open; the full reset
    it would run besides (UNLISTEN, RESET ALL, advisory unlock) costs a round trip per release,
    for session state these connections never take: session settings, LISTEN and session
    advisory locks live on connections of their own."""


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    database: Database = request.app.state.db
    async with database.sessionmaker() as session:
        try:
            yield session
            await session.commit()
            if outage.ongoing:
                outage.ended()
        except BaseException:
            await session.rollback()
            raise


# scope="function": the commit happens before the response is sent, so a failed commit is
# reported to the client instead of being lost after a 2xx went out.
SessionDep = Annotated[AsyncSession, Depends(_request_session, scope="function")]


@dataclass(frozen=True, slots=True)
class Statement:
    """A SQLAlchemy Core statement compiled once for asyncpg. Parameters are the statement's
    `bindparam`s, passed by name at run time; literal values in it are bound as compiled."""

    sql: str
    param_names: tuple[str, ...]
    literals: Mapping[str, Any]
    committed: Callable[[asyncpg.Record], None] | None = None
    """Run with the statement's row once the transaction it ran in has committed: work a
    statement's writes entail (eventlog's after-commit), done by the runner, not by the route.
    Such a statement is run with `fetchrow`."""

    @classmethod
    def of(
        cls,
        statement: ClauseElement,
        committed: Callable[[asyncpg.Record], None] | None = None,
    ) -> "Statement":
        compiled = cast(SQLCompiler, statement.compile(dialect=_DIALECT))
        literals = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
        return cls(str(compiled), tuple(compiled.positiontup or ()), literals, committed)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [
            params[name] if name in params else self.literals[name] for name in self.param_names
        ]


class StatementRunner(Protocol):
    """What both `TransactionDep` and `AutocommitDep` give a route: statements to run."""

    async def fetch(self, statement: Statement, **params: Any) -> list[asyncpg.Record]: ...

    async def fetchrow(self, statement: Statement, **params: Any) -> asyncpg.Record | None: ...

    async def fetchval(self, statement: Statement, **params: Any) -> Any: ...


@dataclass
class Connection:
    """A request's pooled asyncpg connection, inside the request's transaction."""

    connection: asyncpg.Connection
    _after_commit: list[Callable[[], None]] = field(default_factory=list)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the transaction has committed (never if it rolls back)."""
        self._after_commit.append(callback)

    async def fetch(self, statement: Statement, **params: Any) -> list[asyncpg.Record]:
        _without_hook(statement)
        rows: list[asyncpg.Record] = await self.connection.fetch(
            statement.sql, *statement.args(params)
        )
        return rows

    async def fetchrow(self, statement: Statement, **params: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.connection.fetchrow(
            statement.sql, *statement.args(params)
        )
        if statement.committed is not None and row is not None:
            self.after_commit(partial(statement.committed, row))
        return row

    async def fetchval(self, statement: Statement, **params: Any) -> Any:
        _without_hook(statement)
        return await self.connection.fetchval(statement.sql, *statement.args(params))


def _without_hook(statement: Statement) -> None:
    if statement.committed is not None:
        raise TypeError("a statement with an after-commit hook is run with fetchrow")


async def _request_transaction(request: Request) -> AsyncIterator[Connection]:
    database: Database = request.app.state.db
    async with database.acquire() as connection:
        db = Connection(connection)
        async with connection.transaction():
            yield db
    for callback in db._after_commit:
        callback()


@dataclass(frozen=True, slots=True)
class Autocommit:
    """Each statement on a pooled connection of its own, as its own transaction."""

    database: Database

    async def fetch(self, statement: Statement, **params: Any) -> list[asyncpg.Record]:
        _without_hook(statement)
        async with self.database.acquire() as connection:
            rows: list[asyncpg.Record] = await connection.fetch(
                statement.sql, *statement.args(params)
            )
            return rows

    async def fetchrow(self, statement: Statement, **params: Any) -> asyncpg.Record | None:
        async with self.database.acquire() as connection:
            row: asyncpg.Record | None = await connection.fetchrow(
                statement.sql, *statement.args(params)
            )
        # Its own transaction: committed once the statement has returned.
        if statement.committed is not None and row is not None:
            statement.committed(row)
        return row

    async def fetchval(self, statement: Statement, **params: Any) -> Any:
        _without_hook(statement)
        async with self.database.acquire() as connection:
            return await connection.fetchval(statement.sql, *statement.args(params))


async def _request_autocommit(request: Request) -> Autocommit:
    # A plain function, not a generator: FastAPI's per-request handling of a generator
    # dependency (exit stacks, shielded exit) cost ~8% of a read's CPU here.
    return Autocommit(request.app.state.db)


# scope="function" for the same reason as SessionDep: commit before the response goes out.
TransactionDep = Annotated[Connection, Depends(_request_transaction, scope="function")]
# No BEGIN/COMMIT (two round trips fewer): each statement sees its own snapshot and commits
# on its own, which is all a read of a board or a page, or a write in one statement, needs.
AutocommitDep = Annotated[Autocommit, Depends(_request_autocommit)]


def asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def ensure_database(url: str) -> bool:
    """Create the database named in `url` if it is missing; True when it was created."""
    name = make_url(url).database
    if not name:
        raise ValueError("the database URL names no database")
    conn = await asyncpg.connect(asyncpg_dsn(url, "postgres"))
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            return False
        return True
    finally:
        await conn.close()


async def drop_database(url: str) -> None:
    name = make_url(url).database
    conn = await asyncpg.connect(asyncpg_dsn(url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
