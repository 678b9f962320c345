"""Real processes on one fresh database: auth-service (for the JWKS), api-service (the writes),
and realtime-service; clients speak real HTTP and WebSocket to them."""

import asyncio
import base64
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from devstack.testing import (
    ServiceProcess,
    SseStream,
    events_sequenced,
    fresh_database,
    uvicorn_process,
    uvicorn_service,
)
from eventlog import MIGRATIONS as LOG_MIGRATIONS
from servicekit.db import asyncpg_dsn
from servicekit.jwt import SigningKey, encode_access_token, load_signing_key

ROOT = Path(__file__).parents[2]
# api-service's before the log's (which adopts the tables api's history created), then realtime's.
MIGRATIONS = [
    ROOT / "auth-service" / "migrations",
    ROOT / "api-service" / "migrations",
    LOG_MIGRATIONS,
    ROOT / "realtime-service" / "migrations",
]
ISSUER, AUDIENCE = "http://127.0.0.1:8080/auth", "stack"
ORIGIN = "http://127.0.0.1:8080"


@dataclass
class Stack:
    database_url: str
    auth_url: str
    api_url: str
    realtime_url: str
    key: SigningKey
    env: dict[str, str] = field(default_factory=dict)

    def token(self, user_id: uuid.UUID, ttl: float = 600) -> str:
        now = time.time()
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": str(user_id),
            "sid": str(uuid.uuid4()),
            "jti": uuid.uuid4().hex,
            "iat": int(now),
            "exp": int(now + ttl),
        }
        return encode_access_token(claims, self.key)

    def headers(self, user_id: uuid.UUID, ttl: float = 600) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, ttl)}"}


@pytest.fixture(scope="session")
async def stack() -> AsyncIterator[Stack]:
    async with fresh_database("realtime", MIGRATIONS) as url:
        env = {"DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
        async with uvicorn_process("auth_service.main:app", env) as auth_url:
            connection = await asyncpg.connect(asyncpg_dsn(url))
            pem = await connection.fetchval("SELECT private_pem FROM auth.signing_keys")
            await connection.close()
            env["JWKS_URL"] = f"{auth_url}/auth/.well-known/jwks.json"
            realtime_env = {**env, "WS_AUTH_TIMEOUT_SECONDS": "1", "POLL_INTERVAL_SECONDS": "0.5"}
            async with (
                uvicorn_process("api_service.main:app", env) as api_url,
                uvicorn_process("realtime_service.main:app", realtime_env) as realtime_url,
            ):
                yield Stack(url, auth_url, api_url, realtime_url, load_signing_key(pem), env)


RealtimeFactory = Callable[..., AbstractAsyncContextManager[ServiceProcess]]


@pytest.fixture
def realtime_process(stack: Stack) -> RealtimeFactory:
    """Another realtime-service process on the same database, with extra settings."""

    def start(**settings: str) -> AbstractAsyncContextManager[ServiceProcess]:
        return uvicorn_service("realtime_service.main:app", {**stack.env, **settings})

    return start


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=10) as client:
        yield client


class Board:
    def __init__(self, stack: Stack, client: httpx.AsyncClient, owner: uuid.UUID, board_id: str):
        self.stack, self.client, self.owner, self.id = stack, client, owner, board_id
        self.channel = f"board:{board_id}"

    async def add(self, user: uuid.UUID, role: str) -> None:
        response = await self.client.put(
            f"/api/boards/{self.id}/members/{user}",
            json={"role": role},
            headers=self.stack.headers(self.owner),
        )
        assert response.status_code == 200, response.text
        # Its `member.added` is in the log before the caller subscribes: a subscription opened
        # while it waits in the inbox gets it live, in place of what the test expects next.
        await settled(self.stack)

    async def remove(self, user: uuid.UUID) -> None:
        response = await self.client.delete(
            f"/api/boards/{self.id}/members/{user}", headers=self.stack.headers(self.owner)
        )
        assert response.status_code == 204, response.text

    async def create_task(self, title: str = "task") -> dict[str, Any]:
        response = await self.client.post(
            f"/api/boards/{self.id}/tasks",
            json={"title": title},
            headers=self.stack.headers(self.owner),
        )
        assert response.status_code == 201, response.text
        task: dict[str, Any] = response.json()
        return task

    async def update_task(self, task_id: str, **fields: Any) -> None:
        response = await self.client.patch(
            f"/api/tasks/{task_id}", json=fields, headers=self.stack.headers(self.owner)
        )
        assert response.status_code == 200, response.text

    async def delete_task(self, task_id: str) -> None:
        response = await self.client.delete(
            f"/api/tasks/{task_id}", headers=self.stack.headers(self.owner)
        )
        assert response.status_code == 204, response.text


@pytest.fixture
async def board(stack: Stack, api: httpx.AsyncClient) -> Board:
    owner = uuid.uuid4()
    response = await api.post("/api/boards", json={"name": "live"}, headers=stack.headers(owner))
    assert response.status_code == 201, response.text
    await settled(stack)
    return Board(stack, api, owner, response.json()["id"])


async def settled(stack: Stack) -> None:
    """Wait until api-service's sequencer has moved every committed event into the log (and
    notified realtime of it): a write's events reach the log shortly after its response."""
    await events_sequenced(stack.database_url)


async def log_ids(stack: Stack, channel: str, after: int = 0) -> list[int]:
    await settled(stack)
    connection = await asyncpg.connect(asyncpg_dsn(stack.database_url))
    try:
        rows = await connection.fetch(
            "SELECT id FROM eventlog.events WHERE channel = $1 AND id > $2 ORDER BY id",
            channel,
            after,
        )
    finally:
        await connection.close()
    return [row["id"] for row in rows]


@asynccontextmanager
async def open_sse(
    stack: Stack,
    url: str,
    *,
    channels: list[str],
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> AsyncIterator[SseStream]:
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as client,
        client.stream(
            "GET",
            f"{url}/realtime/sse",
            params={"channels": ",".join(channels), **(params or {})},
            headers=headers or {},
        ) as response,
    ):
        assert response.status_code == 200, (await response.aread()).decode()
        yield SseStream(response)


async def ticket(stack: Stack, url: str, user: uuid.UUID, ttl: float = 600) -> str:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{url}/realtime/tickets", headers=stack.headers(user, ttl))
    assert response.status_code == 201, response.text
    value: str = response.json()["ticket"]
    return value


def ws_connect(url: str, *, ticket: str | None = None, origin: str | None = ORIGIN) -> connect:
    target = url.replace("http://", "ws://") + "/realtime/ws"
    if ticket is not None:
        target += f"?ticket={ticket}"
    return connect(target, origin=origin, open_timeout=5, max_size=None)  # type: ignore[arg-type]


async def receive(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return message


async def join(ws: ClientConnection, token: str, channel: str) -> None:
    """Authenticate with a first message, subscribe, and wait for the confirmation."""
    await ws.send(json.dumps({"type": "auth", "token": token}))
    await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
    await receive_type(ws, "subscribed")


async def receive_type(ws: ClientConnection, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    while True:
        message = await receive(ws, timeout)
        if message["type"] == kind:
            return message


class RawWebSocket:
    """A minimal WebSocket client over a plain socket, for a client that stops reading: no
    library buffers frames behind the test's back, and the receive buffer is tiny."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, url: str) -> "RawWebSocket":
        host, port = url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        # A small limit: the StreamReader stops reading the socket past twice this.
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**16)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /realtime/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nOrigin: {ORIGIN}\r\n\r\n"
            ).encode()
        )
        status = await reader.readuntil(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status
        return cls(reader, writer)

    async def send_json(self, message: dict[str, Any]) -> None:
        payload = json.dumps(message).encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + mask + masked)
        await self.writer.drain()

    async def read_frame(self) -> tuple[int, bytes]:
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        return first & 0x0F, await self.reader.readexactly(length)

    async def close_code(self) -> int:
        """Read (and drop) frames until the server's close frame; its code."""
        while True:
            opcode, payload = await self.read_frame()
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big")

    def close(self) -> None:
        self.writer.close()
