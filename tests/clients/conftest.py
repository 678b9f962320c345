"""The clients' tests: a native stack tuned so that what takes minutes in production happens
within a test (access tokens of 12 s, heartbeats every second), one whose connection queues
hold 3 events (so that a burst cuts a subscriber off as too slow), one whose access tokens
last 4 s (so that a test sees several expire within seconds), a control endpoint
for what a test cannot do through the gateway (restart a realtime replica, read the event log),
and a TCP proxy of the test's own in front of the gateway."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from devstack.testing import events_sequenced
from servicekit.db import asyncpg_dsn

from ..conftest import SECRETS_SEEN, log_leaks, native_stack, stored_secrets
from .proxy import Proxy

ACCESS_TOKEN_TTL_SECONDS = 12
SHORT_ACCESS_TOKEN_TTL_SECONDS = 4
HEARTBEAT_SECONDS = 1
CLIENT_STACK_ENV = {
    "ACCESS_TOKEN_TTL_SECONDS": str(ACCESS_TOKEN_TTL_SECONDS),
    "HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
    # The deployment's pool size: this stack carries the heaviest live load of the suite.
    "DB_POOL_SIZE": "10",
}
TINY_QUEUE_LIMIT = 3


@dataclass
class ClientStack:
    base_url: str
    control_url: str
    database_url: str
    access_token_ttl_seconds: int


async def event_log(database_url: str, channel: str, after: int) -> list[dict[str, object]]:
    """The log's events on `channel` after `after`, once the sequencer has moved every event
    written so far from the inbox into the log (it does so a few milliseconds after commit)."""
    await events_sequenced(database_url)
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await connection.fetch(
            "SELECT id, type FROM eventlog.events WHERE channel = $1 AND id > $2 ORDER BY id",
            channel,
            after,
        )
    finally:
        await connection.close()
    return [{"id": row["id"], "type": row["type"]} for row in rows]


class StackShelf:
    """The client stacks, one running at a time: asking for another stops the one running.
    The client tests are ordered by the stack they use (tests/conftest.py), so
    each starts once; and the run never holds the connections of several at once."""

    def __init__(self) -> None:
        self._name = ""
        self._running: ClientStack | None = None
        self._exits = AsyncExitStack()

    async def get(self, name: str, env: dict[str, str]) -> ClientStack:
        if self._running is None or self._name != name:
            await self.close()
            self._running = await self._exits.enter_async_context(controlled_stack(name, env))
            self._name = name
        return self._running

    async def close(self) -> None:
        await self._exits.aclose()
        self._running = None


@pytest.fixture(scope="session")
async def stack_shelf() -> AsyncIterator[StackShelf]:
    shelf = StackShelf()
    yield shelf
    await shelf.close()


# Each test on a client stack signs up its own users and works on its own boards. Tests that
# restart a replica do so through the control endpoint; the clients under test must ride it
# out, and so must the tests after them.
@pytest.fixture
async def client_stack(stack_shelf: StackShelf) -> ClientStack:
    return await stack_shelf.get("clients", CLIENT_STACK_ENV)


# Small pools for the next two: each serves a few tests.
@pytest.fixture
async def tiny_queue_stack(stack_shelf: StackShelf) -> ClientStack:
    env = {**CLIENT_STACK_ENV, "QUEUE_LIMIT": str(TINY_QUEUE_LIMIT), "DB_POOL_SIZE": "3"}
    return await stack_shelf.get("clients_slow", env)


@pytest.fixture
async def short_token_stack(stack_shelf: StackShelf) -> ClientStack:
    # Apart from the tiny queues: an SSE stream that ends every few seconds as its token
    # expires starts its replay again, and would never be cut off as too slow.
    ttl = str(SHORT_ACCESS_TOKEN_TTL_SECONDS)
    env = {**CLIENT_STACK_ENV, "ACCESS_TOKEN_TTL_SECONDS": ttl, "DB_POOL_SIZE": "3"}
    return await stack_shelf.get("clients_short", env)


@asynccontextmanager
async def controlled_stack(name: str, env: dict[str, str]) -> AsyncIterator[ClientStack]:
    # A minute and a half to become ready: the client tests' stacks start while other test
    # processes may be busy on the same cores.
    async with native_stack(name, service_env=env, ready_within=90) as stack:
        database_url = stack.config.database_url

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            """POST /restart?service=realtime-1 and GET /events?channel=&after=, nothing else."""
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            method, target, _ = head.split("\r\n", 1)[0].split(" ", 2)
            url = urlsplit(target)
            params = {name: values[0] for name, values in parse_qs(url.query).items()}
            status, body = "404 Not Found", b"{}"
            if method == "POST" and url.path == "/restart":
                await stack.restart(params["service"])
                status, body = "200 OK", b'{"restarted": true}'
            elif method == "GET" and url.path == "/events":
                log = await event_log(database_url, params["channel"], int(params["after"]))
                status, body = "200 OK", json.dumps(log).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield ClientStack(
                stack.config.gateway_url,
                f"http://127.0.0.1:{port}",
                database_url,
                int(env["ACCESS_TOKEN_TTL_SECONDS"]),
            )
        finally:
            server.close()
        secrets = set(SECRETS_SEEN.values) | await stored_secrets(database_url)
    # The stack's own log check, once it has stopped (its tests run on their own pytest-xdist
    # worker, whose last test is not tests/test_logs_hold_no_secrets.py).
    leaks = log_leaks(sorted(stack.config.run_dir.glob("*.log")), secrets)
    assert not leaks, "\n".join(leaks[:20])


@pytest.fixture
async def proxy(client_stack: ClientStack) -> AsyncIterator[Proxy]:
    async with Proxy(client_stack.base_url) as running:
        yield running
