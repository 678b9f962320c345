"""Delivery over NATS: three realtime nodes, each behind a proxy that can drop single bus
messages, a real nats-server killed for 5 s and restarted, writers going on throughout. Every
subscriber gets every event once, in order; the log is read only to repair."""

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest

from devstack.testing import (
    ServiceProcess,
    SseStream,
    free_port,
    fresh_database,
    uvicorn_process,
    uvicorn_service,
)
from servicekit.db import asyncpg_dsn
from servicekit.jwt import load_signing_key

from .conftest import MIGRATIONS, Board, Stack, open_sse, settled

# Left out of `make test-fast` (docs/testing.md): three realtime processes, nats-server
# killed and restarted.
pytestmark = pytest.mark.slow

NATS_SERVER = "/usr/sbin/nats-server"
NODES = 3


class NatsServer:
    """A nats-server of the test's own on 127.0.0.1, killable and restartable on its port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            assert time.monotonic() < deadline, "nats-server did not start"
            await asyncio.sleep(0.05)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        await self.process.wait()


class DroppingProxy:
    """A TCP proxy between one realtime node and nats-server that drops every
    `drop_every`-th message the server sends (0: none). NATS's protocol is text: a message is
    `MSG <subject> <sid> [reply] <bytes>\\r\\n<payload>\\r\\n`."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.drop_every = 0
        self.forwarded = 0
        self.dropped = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._filter(up_reader, writer)),
        ]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        writer.close()
        up_writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    async def _filter(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                line = await reader.readuntil(b"\r\n")
                if not line.startswith(b"MSG "):
                    writer.write(line)
                    await writer.drain()
                    continue
                payload = await reader.readexactly(int(line.split()[-1]) + 2)
                self.forwarded += 1
                if self.drop_every and self.forwarded % self.drop_every == 0:
                    self.dropped += 1
                    continue
                writer.write(line + payload)
                await writer.drain()


@dataclass
class BusStack:
    stack: Stack
    nats: NatsServer
    proxies: list[DroppingProxy]
    nodes: list[ServiceProcess]
    dsn: str
    boards: list[Board] = field(default_factory=list)


@pytest.fixture(scope="module")
async def bus_stack() -> AsyncIterator[BusStack]:
    nats = NatsServer()
    await nats.start()
    async with fresh_database("bus", MIGRATIONS) as url, AsyncExitStack() as exits:
        exits.push_async_callback(nats.kill)
        env = {"DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
        auth_url = await exits.enter_async_context(uvicorn_process("auth_service.main:app", env))
        connection = await asyncpg.connect(asyncpg_dsn(url))
        pem = await connection.fetchval("SELECT private_pem FROM auth.signing_keys")
        await connection.close()
        env["JWKS_URL"] = f"{auth_url}/auth/.well-known/jwks.json"
        api_url = await exits.enter_async_context(
            uvicorn_process(
                "api_service.main:app", {**env, "NATS_URL": f"nats://127.0.0.1:{nats.port}"}
            )
        )
        proxies, nodes = [], []
        for _ in range(NODES):
            proxy = DroppingProxy(nats.port)
            await proxy.start()
            exits.push_async_callback(proxy.close)
            proxies.append(proxy)
            node_env = {**env, "NATS_URL": f"nats://127.0.0.1:{proxy.port}"}
            nodes.append(
                await exits.enter_async_context(
                    uvicorn_service("realtime_service.main:app", node_env)
                )
            )
        stack = Stack(url, auth_url, api_url, nodes[0].url, load_signing_key(pem), env)
        bus = BusStack(stack, nats, proxies, nodes, asyncpg_dsn(url))
        api = await exits.enter_async_context(httpx.AsyncClient(base_url=api_url, timeout=10))
        owner = uuid.uuid4()
        for name in ("a", "b"):
            created = await api.post(
                "/api/boards", json={"name": name}, headers=stack.headers(owner)
            )
            assert created.status_code == 201, created.text
            bus.boards.append(Board(stack, api, owner, created.json()["id"]))
        await settled(stack)
        yield bus


class Subscriber:
    def __init__(self, stream: SseStream, channels: list[str]) -> None:
        self.stream, self.channels = stream, channels
        self.ids: list[int] = []

    async def run(self) -> None:
        while True:
            message = await self.stream.next(timeout=60)
            if message.id is not None:
                self.ids.append(message.id)


async def node_metrics(node: ServiceProcess) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{node.url}/metrics")).text
    values = {}
    for line in text.splitlines():
        if line.startswith(("realtime_log_queries_total", "realtime_gap_repairs_total")):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


async def log_ids(dsn: str, channels: list[str], after: int) -> list[int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT id FROM eventlog.events WHERE channel = ANY($1) AND id > $2 ORDER BY id",
            channels,
            after,
        )
    finally:
        await connection.close()
    return [row["id"] for row in rows]


async def write(boards: list[Board], stop: asyncio.Event, per_second: float = 40) -> int:
    count = 0
    while not stop.is_set():
        await boards[count % len(boards)].create_task(f"t{count}")
        count += 1
        await asyncio.sleep(1 / per_second)
    return count


async def wait_for_all(subscribers: list[Subscriber], dsn: str, start: int) -> None:
    deadline = time.monotonic() + 30
    for subscriber in subscribers:
        expected = await log_ids(dsn, subscriber.channels, start)
        while len(subscriber.ids) < len(expected):
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.05)


def repairs(metrics: dict[str, float], reason: str) -> float:
    return metrics[f'realtime_gap_repairs_total{{reason="{reason}"}}']


def queries(metrics: dict[str, float], purpose: str) -> float:
    return metrics[f'realtime_log_queries_total{{purpose="{purpose}"}}']


async def test_every_subscriber_gets_every_event_once_through_drops_and_an_outage(
    bus_stack: BusStack,
) -> None:
    stack, boards = bus_stack.stack, bus_stack.boards
    both = [b.channel for b in boards]
    connection = await asyncpg.connect(bus_stack.dsn)
    start = await connection.fetchval("SELECT sequenced_through FROM eventlog.sequencer_lease")
    await connection.close()
    headers = stack.headers(boards[0].owner)
    async with AsyncExitStack() as exits:
        subscribers: list[Subscriber] = []
        for node in bus_stack.nodes:
            for channels in ([both[0]], both):
                stream = await exits.enter_async_context(
                    open_sse(stack, node.url, channels=channels, headers=headers)
                )
                await stream.until("ready")
                subscribers.append(Subscriber(stream, channels))
        reading = [asyncio.create_task(s.run()) for s in subscribers]
        try:
            # Steady state: no drops, no outage. The log is not read at all.
            before = [await node_metrics(node) for node in bus_stack.nodes]
            stop = asyncio.Event()
            writing = asyncio.create_task(write(boards, stop))
            await asyncio.sleep(2)
            stop.set()
            steady_writes = await writing
            await settled(stack)
            await wait_for_all(subscribers, bus_stack.dsn, start)
            steady = [await node_metrics(node) for node in bus_stack.nodes]
            for was, now in zip(before, steady, strict=True):
                assert queries(now, "repair") == queries(was, "repair")
                assert queries(now, "tail") == 0

            # Single messages dropped, then nats-server killed for 5 s and restarted.
            for proxy in bus_stack.proxies:
                proxy.drop_every = 15
            stop = asyncio.Event()
            writing = asyncio.create_task(write(boards, stop))
            await asyncio.sleep(3)
            await bus_stack.nats.kill()
            await asyncio.sleep(5)
            await bus_stack.nats.start()
            await asyncio.sleep(3)
            stop.set()
            writes = steady_writes + await writing
            await settled(stack)
            await wait_for_all(subscribers, bus_stack.dsn, start)
        finally:
            for task in reading:
                task.cancel()
            for proxy in bus_stack.proxies:
                proxy.drop_every = 0

    assert len(await log_ids(bus_stack.dsn, both, start)) == writes
    for subscriber in subscribers:
        expected = await log_ids(bus_stack.dsn, subscriber.channels, start)
        assert subscriber.ids == expected, "a subscriber missed, repeated or reordered events"
    assert all(proxy.dropped > 0 for proxy in bus_stack.proxies)
    for node, was in zip(bus_stack.nodes, steady, strict=True):
        now = await node_metrics(node)
        assert repairs(now, "reconnect") > repairs(was, "reconnect")
        assert repairs(now, "gap") + repairs(now, "head") > repairs(was, "gap") + repairs(
            was, "head"
        )
        total_repairs = sum(repairs(now, r) - repairs(was, r) for r in ("gap", "head", "reconnect"))
        # Each repair reads its range in queries of up to 500 events; nothing else reads.
        assert queries(now, "repair") - queries(was, "repair") >= total_repairs > 0
        assert queries(now, "tail") == 0
        assert queries(now, "replay") == queries(was, "replay")
