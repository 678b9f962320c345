"""realtime-service fan-out: delivery latency, saturation, and memory per idle connection,
against a naive sse-starlette broadcast (bench/naive_sse_app.py) in the same run.

(a) latency: 1,000 subscribers on one board (half SSE, half WebSocket) while 20 events/s are
    committed; latency is from the writer's COMMIT returning to the event's arrival at the
    last subscriber.
(b) saturation: the event rate is raised step by step (1,000 SSE subscribers on each server)
    until that p99 passes 250 ms; reported as deliveries/s (events/s x subscribers).
(c) idle WebSockets per process: RSS growth per authenticated, subscribed connection.

Events are committed with api-service's own outbox statement, and numbered by its sequencer
(an api-service process runs beside realtime). Clients are lean raw-socket
SSE and WebSocket readers in this process; its CPU time is printed. 127.0.0.1 only; every
phase is bounded in time.

    uv run python -m bench.realtime_fanout [--quick]
"""

import argparse
import asyncio
import base64
import json
import os
import re
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from api_service.events import TASK_UPDATED
from devstack.testing import (
    ServiceProcess,
    events_sequenced,
    fresh_database,
    rss_bytes,
    uvicorn_service,
)
from eventlog import MIGRATIONS as LOG_MIGRATIONS
from eventlog.reader import head
from eventlog.writer import Event, append_events
from servicekit.db import Connection, asyncpg_dsn
from servicekit.jwt import encode_access_token, load_signing_key

ROOT = Path(__file__).parents[1]
# api-service's before the log's (which adopts the tables api's history created), then realtime's.
MIGRATIONS = [
    ROOT / "auth-service" / "migrations",
    ROOT / "api-service" / "migrations",
    LOG_MIGRATIONS,
    ROOT / "realtime-service" / "migrations",
]
ORIGIN = "http://127.0.0.1:8080"
_SSE_ID = re.compile(rb"(?:^|\n)id: (\d+)\r?\n")
_WS_ID = re.compile(rb'"type":"event","id":(\d+)')


@dataclass
class Deliveries:
    """Arrival time of each event at each client; the latency that counts is the last one's."""

    committed: dict[int, float] = field(default_factory=dict)
    last_arrival: dict[int, float] = field(default_factory=dict)
    arrivals: dict[int, int] = field(default_factory=dict)

    def arrived(self, event_id: int) -> None:
        now = time.time()
        self.last_arrival[event_id] = now
        self.arrivals[event_id] = self.arrivals.get(event_id, 0) + 1

    def latencies_ms(self, subscribers: int) -> list[float]:
        return sorted(
            (self.last_arrival[i] - t) * 1000
            for i, t in self.committed.items()
            if self.arrivals.get(i, 0) >= subscribers
        )

    def complete(self, subscribers: int) -> bool:
        return all(self.arrivals.get(i, 0) >= subscribers for i in self.committed)


async def sse_client(
    host: str, port: int, path: str, headers: str, deliveries: Deliveries, ready: asyncio.Event
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    ready.set()
    buffer = b""
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            buffer += chunk
            cut = buffer.rfind(b"\n")
            for match in _SSE_ID.finditer(buffer, 0, cut + 1):
                deliveries.arrived(int(match.group(1)))
            buffer = buffer[cut + 1 :]
    finally:
        writer.close()


async def ws_open(
    host: str, port: int, token: str, channel: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /realtime/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {ORIGIN}\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    for message in ({"type": "auth", "token": token}, {"type": "subscribe", "channel": channel}):
        payload = json.dumps(message).encode()
        length = (
            bytes([0x80 | len(payload)])
            if len(payload) < 126
            else (bytes([0x80 | 126]) + len(payload).to_bytes(2, "big"))
        )
        # Mask of zeros: payload XOR 0 is the payload itself.
        writer.write(bytes([0x81]) + length + b"\0\0\0\0" + payload)
    await writer.drain()
    return reader, writer


async def ws_client(
    host: str, port: int, token: str, channel: str, deliveries: Deliveries, ready: asyncio.Event
) -> None:
    reader, writer = await ws_open(host, port, token, channel)
    try:
        while True:
            first, second = await reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(await reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await reader.readexactly(8), "big")
            payload = await reader.readexactly(length)
            if first & 0x0F == 0x8:
                return
            match = _WS_ID.search(payload, 0, 64)
            if match:
                deliveries.arrived(int(match.group(1)))
            elif b'"subscribed"' in payload:
                ready.set()
    except asyncio.IncompleteReadError:
        return
    finally:
        writer.close()


async def write_events(
    dsn: str, channel: str, actor: uuid.UUID, rate: float, seconds: float, deliveries: Deliveries
) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        # The sequencer numbers events densely in commit order and this is the only writer:
        # the k-th event written gets the k-th id after the log's head.
        await events_sequenced(dsn)
        event_id = await head(connection)
        deadline = time.perf_counter() + seconds
        interval = 1 / rate
        next_at = time.perf_counter()
        while time.perf_counter() < deadline:
            async with connection.transaction():
                await append_events(
                    Connection(connection), actor, [Event(channel, TASK_UPDATED, {"n": 1})]
                )
            event_id += 1
            deliveries.committed[event_id] = time.time()
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    finally:
        await connection.close()


def cpu_seconds(pid: int | None = None) -> float:
    if pid is None:
        times = os.times()
        return times.user + times.system
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def server_latency_quantiles(url: str) -> tuple[float, float, float]:
    """p50 and p99 (upper bucket bounds, ms) and count of realtime_delivery_latency_seconds:
    commit to socket write, as the server measures it."""
    reader, writer = await asyncio.open_connection(*url.removeprefix("http://").split(":"))
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    text = (await reader.read()).decode()
    writer.close()
    buckets = [
        (float(bound), float(count))
        for bound, count in re.findall(
            r'realtime_delivery_latency_seconds_bucket\{le="([^"]+)"\} (\S+)', text
        )
    ]
    total = buckets[-1][1] if buckets else 0.0

    def quantile(fraction: float) -> float:
        return next((bound * 1000 for bound, count in buckets if count >= fraction * total), 0.0)

    return quantile(0.5), quantile(0.99), total


def percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(len(values) * fraction))] if values else float("nan")


Clients = Callable[[Deliveries], Awaitable[list[asyncio.Task[None]]]]


async def measure(
    start_clients: Clients,
    subscribers: int,
    dsn: str,
    channel: str,
    actor: uuid.UUID,
    rate: float,
    seconds: float,
) -> tuple[float, float, bool]:
    deliveries = Deliveries()
    tasks = await start_clients(deliveries)
    try:
        await write_events(dsn, channel, actor, rate, seconds, deliveries)
        deadline = time.time() + 5
        while not deliveries.complete(subscribers) and time.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        latencies = deliveries.latencies_ms(subscribers)
        return (
            statistics.median(latencies) if latencies else float("nan"),
            percentile(latencies, 0.99),
            deliveries.complete(subscribers),
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def main(quick: bool) -> None:
    seconds = 4.0 if quick else 10.0
    async with fresh_database("bench_realtime", MIGRATIONS) as url:
        dsn = asyncpg_dsn(url)
        env = {"DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
        async with uvicorn_service("auth_service.main:app", env) as auth:
            setup = await asyncpg.connect(dsn)
            key = load_signing_key(
                await setup.fetchval("SELECT private_pem FROM auth.signing_keys")
            )
            board, user = uuid.uuid4(), uuid.uuid4()
            await setup.execute("INSERT INTO api.boards (id, name) VALUES ($1, 'bench')", board)
            await setup.execute(
                "INSERT INTO api.members (board_id, user_id, role) VALUES ($1, $2, 'owner')",
                board,
                user,
            )
            await setup.close()
            now = int(time.time())
            token = encode_access_token(
                {
                    "iss": "http://127.0.0.1:8080/auth",
                    "aud": "stack",
                    "sub": str(user),
                    "sid": "bench",
                    "jti": "bench",
                    "iat": now,
                    "exp": now + 3600,
                },
                key,
            )
            channel = f"board:{board}"
            realtime_env = {
                **env,
                "JWKS_URL": f"{auth.url}/auth/.well-known/jwks.json",
                "UVICORN_WS_PER_MESSAGE_DEFLATE": "false",
            }
            counts = (1000, 5000) if quick else (1000, 5000, 10000)
            await idle_connections(realtime_env, user, token, counts)
            async with (
                uvicorn_service("api_service.main:app", realtime_env),
                uvicorn_service("realtime_service.main:app", realtime_env) as realtime,
                uvicorn_service("bench.naive_sse_app:app", {"BENCH_DSN": dsn}) as naive,
            ):
                await run_scenarios(realtime, naive, dsn, channel, user, token, seconds, quick)


async def idle_connections(
    env: dict[str, str], channel_user: uuid.UUID, token: str, counts: tuple[int, ...]
) -> None:
    """Each count on a fresh process, so RSS growth is the connections' own (a process that
    has freed memory reuses it, which would flatter the figure)."""
    for count in counts:
        async with uvicorn_service("realtime_service.main:app", env) as realtime:
            host, port = realtime.url.removeprefix("http://").split(":")
            before = rss_bytes(realtime.pid)
            connections = []
            for index in range(count):
                connections.append(await ws_open(host, int(port), token, f"user:{channel_user}"))
                if index % 500 == 499:
                    await asyncio.sleep(0.2)
            await asyncio.sleep(2)
            after = rss_bytes(realtime.pid)
            print(
                f"(c) {count:,} idle WebSockets: RSS {before / 2**20:.0f} -> {after / 2**20:.0f}"
                f" MiB, {(after - before) / count / 1024:.1f} KiB per connection"
            )
            for _, writer in connections:
                writer.close()


async def run_scenarios(
    realtime: ServiceProcess,
    naive: ServiceProcess,
    dsn: str,
    channel: str,
    user: uuid.UUID,
    token: str,
    seconds: float,
    quick: bool,
) -> None:
    host, port = realtime.url.removeprefix("http://").split(":")
    naive_port = int(naive.url.rsplit(":", 1)[1])
    sse_path = f"/realtime/sse?channels={channel}"
    auth_header = f"Authorization: Bearer {token}\r\n"

    def clients(sse: int, ws: int, naive_sse: int = 0) -> Clients:
        async def start(deliveries: Deliveries) -> list[asyncio.Task[None]]:
            tasks, readies = [], []
            for index in range(sse + ws + naive_sse):
                ready = asyncio.Event()
                readies.append(ready)
                if index < sse:
                    coro = sse_client(host, int(port), sse_path, auth_header, deliveries, ready)
                elif index < sse + ws:
                    coro = ws_client(host, int(port), token, channel, deliveries, ready)
                else:
                    coro = sse_client(host, naive_port, "/sse", "", deliveries, ready)
                tasks.append(asyncio.create_task(coro))
                if index % 100 == 99:
                    await asyncio.sleep(0.05)
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
            await asyncio.sleep(0.5)
            return tasks

        return start

    pid = realtime.pid
    cpu_client, cpu_server = cpu_seconds(), cpu_seconds(pid)
    p50, p99, complete = await measure(clients(500, 500), 1000, dsn, channel, user, 20, seconds)
    print(
        f"(a) 1,000 subscribers (500 SSE + 500 WS), 20 events/s for {seconds:.0f} s:"
        f" last-subscriber latency p50 {p50:.1f} ms, p99 {p99:.1f} ms, all delivered: {complete}"
    )
    s50, s99, count = await server_latency_quantiles(realtime.url)
    print(
        f"    server side (commit to socket write, histogram bucket bounds): p50 <= {s50:.0f} ms,"
        f" p99 <= {s99:.0f} ms over {count:,.0f} deliveries"
    )
    print(
        f"    CPU: server {cpu_seconds(pid) - cpu_server:.1f} s,"
        f" load generator {cpu_seconds() - cpu_client:.1f} s"
    )

    for name, make in (
        ("realtime-service SSE", clients(1000, 0)),
        ("naive sse-starlette", clients(0, 0, 1000)),
    ):
        best = 0.0
        for rate in (5, 10, 20, 50, 100, 200, 400) if not quick else (20, 100, 200):
            p50, p99, complete = await measure(make, 1000, dsn, channel, user, rate, 4.0)
            ok = complete and p99 <= 250
            print(
                f"(b) {name}: {rate} events/s x 1,000 = {rate * 1000:,} deliveries/s:"
                f" p50 {p50:.1f} ms, p99 {p99:.1f} ms, complete {complete}"
                f"{'' if ok else '  <- over the 250 ms p99 target'}"
            )
            if not ok:
                break
            best = rate * 1000
        print(f"(b) {name}: saturation at >= {best:,.0f} deliveries/s with p99 <= 250 ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter phases, fewer steps")
    asyncio.run(main(parser.parse_args().quick))
