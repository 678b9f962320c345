"""Issue 21's fault, on the native stack (gateway, auth, api, two realtime replicas; with
PostgreSQL NOTIFY or NATS between api and realtime): every backend of the stack's database is
terminated (`pg_terminate_backend`, as a failover, a pooler restart or an operator does) three
times in ten seconds while tasks are written, the services reaching PostgreSQL through a proxy
that hands on the end of stream late (see `faulty_stack`). After each kill delivery resumes
within 5 s; every subscriber of both replicas gets every event once and in order; the
supervisor's restart counter moves; readiness is true again within 3 s."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from devstack.launcher import NativeStack
from devstack.testing import LaggingFinProxy, SseStream, free_port, fresh_database
from servicekit.db import asyncpg_dsn

from .conftest import (
    SECRETS_SEEN,
    STACK_DATABASE_SERVER,
    User,
    gateway_client,
    log_leaks,
    native_only,
    node_stream,
    running,
    sign_up,
    stack_config,
)

# Its own stacks: under pytest-xdist it runs beside the shared stack's tests (conftest.py).
pytestmark = native_only("it terminates the stack's database backends")

RESUME_SECONDS = 5.0


@dataclass
class Subscriber:
    stream: SseStream
    titles: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    received_at: dict[str, float] = field(default_factory=dict)

    async def run(self) -> None:
        while True:
            message = await self.stream.until("task.created", timeout=60)
            title = message.data["data"]["title"]
            self.titles.append(title)
            self.ids.append(message.id or 0)
            self.received_at[title] = time.monotonic()


@asynccontextmanager
async def subscribed(
    nodes: list[str], channel: str, user: User, per_node: int
) -> AsyncIterator[list[Subscriber]]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as client:
        subscribers = []
        for node in nodes:
            for _ in range(per_node):
                stream = await node_stream(client, node, channel, user.headers)
                subscribers.append(Subscriber(stream))
        running = [asyncio.create_task(s.run()) for s in subscribers]
        try:
            yield subscribers
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            for subscriber in subscribers:
                await subscriber.stream.response.aclose()


class Writer:
    """Creates tasks one after another through the gateway, each retried until it commits (a
    write during the outage answers 503); `committed_at` maps each title to its 201."""

    def __init__(self, gateway: httpx.AsyncClient, board_id: str, user: User) -> None:
        self.gateway, self.board_id, self.user = gateway, board_id, user
        self.committed_at: dict[str, float] = {}
        self.failures = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            title = f"fault {n}"
            try:
                response = await self.gateway.post(
                    f"/api/boards/{self.board_id}/tasks",
                    json={"title": title},
                    headers=self.user.headers,
                )
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 201:
                self.committed_at[title] = time.monotonic()
                n += 1
                await asyncio.sleep(0.02)
            else:
                self.failures += 1
                await asyncio.sleep(0.05)


@asynccontextmanager
async def faulty_stack(nats: bool) -> AsyncIterator[tuple[NativeStack, str]]:
    """`native_stack`'s stack (two realtime replicas, small pools), with the services reaching
    PostgreSQL through a `LaggingFinProxy`: a terminated backend's FATAL message arrives at
    once, its end of stream 0.3 s later (the window in which the sequencer died). Yields the
    stack and its database's own URL."""
    async with fresh_database("bgfault", [], await STACK_DATABASE_SERVER.admin_url()) as url:
        parsed = make_url(url)
        async with LaggingFinProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
            bus: dict[str, Any] = {"nats": True, "nats_port": free_port()} if nats else {}
            lease = {"SEQUENCER_LEASE_SECONDS": "2"}
            config = stack_config("bgfault", proxy.dsn(url), lease, **bus)
            async with running(config) as native:
                yield native, url


async def terminate_backends(database_url: str) -> int:
    name = make_url(database_url).database
    admin = await asyncpg.connect(asyncpg_dsn(database_url, "postgres"))
    try:
        killed: int = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        return killed
    finally:
        await admin.close()


async def sample(url: str, name: str) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{url}/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise LookupError(name)


async def seconds_until_ready(urls: list[str], timeout: float) -> float:
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=3) as client:
        for url in urls:
            while (await client.get(f"{url}/readyz")).status_code != 200:
                assert time.monotonic() - started < timeout, f"{url} not ready again"
                await asyncio.sleep(0.1)
    return time.monotonic() - started


@pytest.mark.parametrize("nats", [False, True], ids=["notify", "nats"])
async def test_every_backend_terminated_three_times_under_writes(nats: bool) -> None:
    async with faulty_stack(nats) as (native, database_url):
        config = native.config
        api = f"http://127.0.0.1:{config.api_port}"
        nodes = [f"http://127.0.0.1:{port}" for port in config.realtime_ports]
        async with gateway_client(config.gateway_url) as gateway:
            user = await sign_up(gateway)
            board = await gateway.post("/api/boards", json={"name": "f"}, headers=user.headers)
            assert board.status_code == 201, board.text
            board_id = board.json()["id"]
            async with subscribed(nodes, f"board:{board_id}", user, per_node=2) as subscribers:
                writer = Writer(gateway, board_id, user)
                writing = asyncio.create_task(writer.run())
                await asyncio.sleep(1.0)
                restarts = await sample(api, 'servicekit_loop_restarts_total{loop="sequencer"}')
                kills: list[float] = []
                ready_after: list[float] = []
                for _ in range(3):  # three times within ten seconds
                    assert await terminate_backends(database_url) >= 5
                    kills.append(time.monotonic())
                    ready_after.append(await seconds_until_ready([api, *nodes], timeout=10.0))
                    await asyncio.sleep(max(0.0, kills[-1] + 2.0 - time.monotonic()))
                writer.stop.set()
                await writing
                written = list(writer.committed_at)
                deadline = time.monotonic() + 10
                while any(len(s.titles) < len(written) for s in subscribers):
                    assert time.monotonic() < deadline, (
                        f"delivered {[len(s.titles) for s in subscribers]} of {len(written)}"
                    )
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.3)  # anything delivered twice would arrive by now
            restarted = await sample(api, 'servicekit_loop_restarts_total{loop="sequencer"}')

    assert kills[-1] - kills[0] < 10.0
    for subscriber in subscribers:
        assert subscriber.titles == written, "a subscriber missed, repeated or reordered events"
        assert subscriber.ids == list(range(subscriber.ids[0], subscriber.ids[0] + len(written)))
    for killed in kills:
        # The first write committed after each kill reaches every subscriber within 5 s.
        first = next(t for t in written if writer.committed_at[t] > killed)
        for subscriber in subscribers:
            assert subscriber.received_at[first] - killed < RESUME_SECONDS
    assert restarted >= restarts + 3
    assert max(ready_after) < 3.0, ready_after
    # Beside the other end-to-end tests, this module checks its stack's logs itself.
    leaks = log_leaks(sorted(native.config.run_dir.glob("*.log")), SECRETS_SEEN.values)
    assert not leaks, "\n".join(leaks[:20])
