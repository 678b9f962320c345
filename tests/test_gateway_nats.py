"""The native stack with its own nats-server (the launcher's STACK_NATS): tasks created through
the gateway reach SSE clients of both realtime replicas over the bus, in order, and the
replicas do not read the log for them."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from devstack.launcher import NativeStack
from devstack.testing import free_port

from .conftest import gateway_client, native_stack, node_stream, sign_up


@pytest.fixture(scope="module")
async def nats_stack() -> AsyncIterator[NativeStack]:
    async with native_stack("nats", nats=True, nats_port=free_port()) as native:
        yield native


async def log_queries(url: str) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics")).text
    return {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("realtime_log_queries_total{")
    }


async def test_events_reach_every_replica_over_nats(nats_stack: NativeStack) -> None:
    config = nats_stack.config
    nodes = [f"http://127.0.0.1:{port}" for port in config.realtime_ports]
    async with gateway_client(config.gateway_url) as gateway:
        user = await sign_up(gateway)
        board = await gateway.post("/api/boards", json={"name": "bus"}, headers=user.headers)
        channel = f"board:{board.json()['id']}"
        await asyncio.sleep(0.5)  # the board's own event is not part of what is measured
        before = [await log_queries(node) for node in nodes]
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as client:
            streams = []
            for node in nodes:
                streams.append(await node_stream(client, node, channel, user.headers))
            titles = [f"over the bus {i}" for i in range(5)]
            for title in titles:
                created = await gateway.post(
                    f"/api/boards/{board.json()['id']}/tasks",
                    json={"title": title},
                    headers=user.headers,
                )
                assert created.status_code == 201, created.text
            for stream in streams:
                received = [await stream.until("task.created") for _ in titles]
                assert [m.data["data"]["title"] for m in received] == titles
                ids = [m.id for m in received]
                assert ids == list(range(ids[0], ids[0] + len(titles)))
                await stream.response.aclose()
        after = [await log_queries(node) for node in nodes]
    for was, now in zip(before, after, strict=True):
        assert now["tail"] == 0
        assert now["repair"] == was["repair"]
