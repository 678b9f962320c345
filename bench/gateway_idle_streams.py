"""The gateway holding 4,000 idle streams (2,000 SSE + 2,000 WebSocket, spread over two
realtime replicas) while CRUD keeps its latency: CRUD p50/p99 through nginx is measured with
no streams (the baseline, in the same run), then again with every stream open; then every
stream is checked to be still open.

The native stack (launcher, nginx, two realtime replicas) on a fresh database; clients are
lean raw sockets in this process. 127.0.0.1 only; bounded in count and time.

    uv run python -m bench.gateway_idle_streams [--streams 4000] [--requests 300]
"""

import argparse
import asyncio
import base64
import json
import os
import resource
import statistics
import time
import uuid
from pathlib import Path

import httpx

from devstack.launcher import NativeStack, StackConfig
from devstack.testing import free_port, fresh_database

ROOT = Path(__file__).parents[1]

PASSWORD = "bench password 1"


async def sse_open(port: int, token: str, channel: str) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"GET /realtime/sse?channels={channel} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head[:200].decode(errors="replace"))
    await reader.readuntil(b"event: ready")
    return writer


async def open_streams(
    port: int, token: str, channel: str, count: int
) -> tuple[list[asyncio.StreamWriter], float]:
    """Half SSE, half WebSocket, opened 100 at a time; the writers and the seconds it took."""
    started = time.perf_counter()
    writers: list[asyncio.StreamWriter] = []
    for offset in range(0, count, 100):
        batch = []
        for index in range(offset, min(count, offset + 100)):
            if index % 2:
                batch.append(sse_open(port, token, channel))
            else:
                batch.append(ws_writer(port, token, channel))
        writers.extend(await asyncio.wait_for(asyncio.gather(*batch), 60))
    return writers, time.perf_counter() - started


async def ws_writer(port: int, token: str, channel: str) -> asyncio.StreamWriter:
    """A WebSocket through the gateway, authenticated by header (no Origin: not a browser),
    subscribed to `channel`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /realtime/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head[:200].decode(errors="replace"))
    payload = json.dumps({"type": "subscribe", "channel": channel}).encode()
    # A masked text frame under 126 bytes; a mask of zeros leaves the payload as it is.
    writer.write(bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
    await asyncio.wait_for(reader.readuntil(b'"subscribed"'), 30)
    return writer


async def crud_latencies(
    client: httpx.AsyncClient, board: str, headers: dict[str, str], n: int
) -> list[float]:
    """Milliseconds per request: create a task, then read the first page, 4 at a time."""
    latencies: list[float] = []
    limit = asyncio.Semaphore(4)

    async def one(i: int) -> None:
        async with limit:
            started = time.perf_counter()
            if i % 2:
                response = await client.get(f"/api/boards/{board}/tasks?limit=20", headers=headers)
            else:
                response = await client.post(
                    f"/api/boards/{board}/tasks", json={"title": f"t{i}"}, headers=headers
                )
            latencies.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()

    await asyncio.gather(*(one(i) for i in range(n)))
    return sorted(latencies)


def summary(latencies: list[float]) -> str:
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return f"p50 {statistics.median(latencies):6.1f} ms  p99 {p99:6.1f} ms  (n={len(latencies)})"


async def main(streams: int, requests: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, streams + 1000)), hard))
    async with fresh_database("bench_gateway", []) as url:
        config = StackConfig(
            gateway_port=free_port(),
            status_port=free_port(),
            auth_port=free_port(),
            api_port=free_port(),
            realtime_ports=[free_port(), free_port()],
            database_url=url,
            run_dir=ROOT / "var" / f"bench-idle-{uuid.uuid4().hex[:6]}",
            extra_env={"LOG_LEVEL": "WARNING"},
            ready_within=180,
        )
        stack = NativeStack(config)
        try:
            await stack.start()
            async with httpx.AsyncClient(base_url=config.gateway_url, timeout=30) as client:
                email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
                await client.post("/auth/register", json={"email": email, "password": PASSWORD})
                tokens = (
                    await client.post(
                        "/auth/token",
                        data={"grant_type": "password", "username": email, "password": PASSWORD},
                    )
                ).json()
                headers = {"Authorization": f"Bearer {tokens['access_token']}"}
                boards = [
                    await client.post("/api/boards", json={"name": name}, headers=headers)
                    for name in ("bench", "quiet")
                ]
                board, quiet_board = (created.json()["id"] for created in boards)
                await crud_latencies(client, board, headers, 50)  # warm-up
                baseline = await crud_latencies(client, board, headers, requests)
                # Idle streams: they follow a board nobody writes to, so the CRUD phase sends
                # them nothing (streams on the written board measure fan-out, not idleness).
                writers, opening = await open_streams(
                    config.gateway_port, tokens["access_token"], f"board:{quiet_board}", streams
                )
                try:
                    await asyncio.sleep(2)
                    loaded = await crud_latencies(client, board, headers, requests)
                    open_now = sum(not writer.is_closing() for writer in writers)
                    status = await client.get(f"http://127.0.0.1:{config.status_port}/stub_status")
                finally:
                    for writer in writers:
                        writer.close()
        finally:
            stack.stop()
    active = json.dumps(status.text.splitlines()[0])
    kinds = f"{streams // 2} SSE + {streams // 2} WS"
    print(f"streams opened: {len(writers)} ({kinds}) in {opening:.1f} s")
    print(f"streams still open after the loaded phase: {open_now}; nginx stub_status: {active}")
    print(f"CRUD, no streams (baseline): {summary(baseline)}")
    print(f"CRUD, {streams} idle streams:  {summary(loaded)}")
    print(
        f"p50 ratio {statistics.median(loaded) / statistics.median(baseline):.2f}x "
        "(shared, loaded 2-core machine: figures are noisy)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=4000)
    parser.add_argument("--requests", type=int, default=300)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.streams, arguments.requests))
